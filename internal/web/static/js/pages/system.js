import { get } from "../api.js";
import { h, badge, table, dur, time, agentLink, showError, throttle, isLifecycle } from "../ui.js";

export function mount(root, _params, ctx) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.append(h("h1", {}, "System"), body);

  async function load() {
    try {
      const [sys, sched] = await Promise.all([get("/api/v1/system"), get("/api/v1/scheduler")]);
      const facts = [["Version", sys.version], ["Commit", sys.commit || "-"], ["Go", sys.go_version || "-"], ["Platform", sys.platform || "-"], ["Node", sys.node],
        ["PID", sys.pid], ["Started", time(sys.started_at)], ["Uptime", dur(sys.uptime_seconds)],
        ["Listen", h("code", {}, sys.listen)], ["Home", h("code", {}, sys.home)]];
      const cfg = Object.entries(sys.config || {}).map(([k, v]) => [k, Array.isArray(v) ? (v.length ? v.join(", ") : "none") : String(v)]);
      const queue = (sched.queued || []).flatMap((l) => l.ids.map((id, i) => ({ id, priority: l.priority, pos: i + 1 })));
      body.replaceChildren(
        h("div", { class: "grid" },
          h("section", { class: "card", "aria-label": "Daemon" }, h("h2", {}, "Daemon"),
            h("dl", { class: "kv" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
          h("section", { class: "card", "aria-label": "Scheduler", id: "sys-scheduler" }, h("h2", {}, "Scheduler"),
            h("dl", { class: "kv" },
              h("dt", {}, "Running"), h("dd", {}, `${sched.running} of ${sched.limits.max_running}`),
              h("dt", {}, "Running llm"), h("dd", {}, `${sched.running_llm} of ${sched.limits.max_running_llm}`),
              h("dt", {}, "Spawns per minute"), h("dd", {}, sched.limits.spawns_per_minute || "no limit"),
              h("dt", {}, "Queued"), h("dd", {}, sched.queued_total)))),
        h("h2", {}, "Queue"),
        table([["Agent", (q) => agentLink(q.id)], ["Priority", (q) => badge(q.priority, "")]], queue, "The queue is empty."),
        h("h2", {}, "Configuration"),
        table([["Setting", (r) => h("code", {}, r[0])], ["Value", (r) => r[1], "wrap"]], cfg, "-"),
      );
    } catch (e) {
      showError(e);
    }
  }

  const reload = throttle(load, 1000);
  const off = ctx.live.on((e) => { if (isLifecycle(e)) reload(); });
  const tick = setInterval(load, 10000);
  load();
  return () => { off(); reload.cancel(); clearInterval(tick); };
}
