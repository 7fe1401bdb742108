import { get, post } from "../api.js";
import { h, badge, table, agentLink, time, ago, throttle, rerender, isLifecycle, showError, toast } from "../ui.js";

export function mount(root, _params, ctx) {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.append(h("h1", {}, "Cron jobs"),
    h("p", { class: "muted" }, "Add jobs with ", h("code", {}, "oxios cron add"), " or in the config file ([cron.jobs.NAME])."), list);

  async function act(j, what) {
    try {
      const r = await post(`/api/v1/cron/${encodeURIComponent(j.name)}/${what}`);
      if (what === "trigger") toast(r.action === "run" ? `${j.name}: spawned ${r.agent_id.slice(-8)}` : `${j.name}: ${r.action} (overlap policy)`, "ok");
      load();
    } catch (e) {
      showError(e);
    }
  }

  async function load() {
    try {
      const jobs = (await get("/api/v1/cron")).items;
      const ops = ctx.canOperate();
      rerender(list, table([
        ["Job", (j) => h("strong", {}, j.name)],
        ["Schedule", (j) => [h("code", {}, j.schedule), j.zone ? h("span", { class: "muted" }, " " + j.zone) : null]],
        ["Spawns", (j) => h("code", {}, j.spec.kind === "llm" ? "llm: " + j.spec.goal : [j.spec.command, ...(j.spec.args || [])].join(" ")), "wrap"],
        ["Next run", (j) => (j.next_run ? [time(j.next_run), h("div", { class: "muted" }, ago(j.next_run))] : "-")],
        ["Last run", (j) => (j.last_run ? ago(j.last_run) : "-")],
        ["Outcome", (j) => [j.last_outcome ? badge(j.last_outcome, j.last_outcome.startsWith("error") ? "bad" : j.last_outcome) : "-",
          j.error ? h("div", { class: "error" }, "cannot be scheduled: " + j.error) : null]],
        ["Recent agents", (j) => j.recent.filter((r) => r.agent_id).slice(0, 3).map((r) => [agentLink(r.agent_id), " "])],
        ["Enabled", (j) => (j.enabled ? badge("enabled", "ok") : badge("disabled", "warn"))],
        ["Actions", (j) => {
          const ro = j.source === "config";
          return [
            h("button", { type: "button", disabled: !ops || ro, title: ro ? "defined in the config file" : null,
              "aria-label": `${j.enabled ? "Disable" : "Enable"} ${j.name}`, onclick: () => act(j, j.enabled ? "disable" : "enable") }, j.enabled ? "Disable" : "Enable"), " ",
            h("button", { type: "button", class: "primary", disabled: !ops, "aria-label": `Trigger ${j.name} now`, onclick: () => act(j, "trigger") }, "Trigger"),
          ];
        }, "actions"],
        ["Source", (j) => j.source],
      ], jobs, "No cron jobs.", { id: "cron-table" }));
    } catch (e) {
      showError(e);
    }
  }

  const reload = throttle(load, 500);
  const off = ctx.live.on((e) => { if (e.type.startsWith("cron.") || isLifecycle(e)) reload(); });
  const tick = setInterval(load, 10000);
  load();
  return () => { off(); reload.cancel(); clearInterval(tick); };
}
