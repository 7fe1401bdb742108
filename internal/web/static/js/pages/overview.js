import { get } from "../api.js";
import { h, badge, table, agentLink, ago, usd, num, sparkline, throttle, isLifecycle, showError } from "../ui.js";

const states = ["queued", "starting", "running", "waiting_approval", "backoff", "succeeded", "failed", "killed"];

export function mount(root, _params, { live }) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  let node = "";
  const pick = h("select", { id: "ov-node", onchange: (e) => { node = e.target.value; load(); } }, h("option", { value: "" }, "all nodes"));
  root.append(h("div", { class: "row" }, h("h1", {}, "Overview"), h("span", { class: "spacer" }),
    h("label", { for: "ov-node" }, "Node "), pick), body);
  let perMinute = [];
  let seenThisMinute = 0;

  // The node filter offers every node of the cluster.
  function nodeOptions(nodes) {
    const names = ["", ...nodes.map((n) => n.name)];
    if (names.join() === [...pick.options].map((o) => o.value).join()) return;
    pick.replaceChildren(...names.map((n) => h("option", { value: n, selected: n === node }, n || "all nodes")));
  }

  async function load() {
    try {
      const o = await get("/api/v1/overview" + (node ? "?node=" + encodeURIComponent(node) : ""));
      nodeOptions(o.nodes || []);
      perMinute = o.events_per_minute;
      seenThisMinute = 0;
      render(o);
    } catch (e) {
      showError(e);
    }
  }

  function render(o) {
    const by = o.agents.by_state || {};
    const u = o.agents.usage || {};
    const parts = (o.readiness.parts || []).map((p) => h("li", {}, p.name, " ", badge(p.state)));
    body.replaceChildren(
      h("div", { class: "grid" },
        h("section", { class: "card", "aria-labelledby": "ov-agents" },
          h("h2", { id: "ov-agents" }, "Agents by state"),
          h("div", { class: "big", id: "ov-total" }, num(o.agents.total)),
          h("ul", { class: "plain", id: "ov-states" }, states.filter((s) => by[s]).map((s) =>
            h("li", {}, badge(s), " ", h("span", { dataset: { state: s } }, num(by[s])))))),
        h("section", { class: "card", "aria-labelledby": "ov-events" },
          h("h2", { id: "ov-events" }, "Events per minute (last hour)"),
          h("div", { class: "big", id: "ov-rate" }, num(perMinute[perMinute.length - 1] || 0), h("span", { class: "muted" }, " this minute")),
          h("div", { id: "ov-spark" }, sparkline(perMinute, "events per minute over the last hour"))),
        h("section", { class: "card", "aria-labelledby": "ov-usage" },
          h("h2", { id: "ov-usage" }, "Model use today"),
          h("div", { class: "big" }, num((u.tokens_in || 0) + (u.tokens_out || 0)), h("span", { class: "muted" }, " tokens")),
          h("div", {}, `cost ${usd(u.cost_usd)} · ${num(u.llm_calls || 0)} calls`)),
        h("section", { class: "card", "aria-labelledby": "ov-ready" },
          h("h2", { id: "ov-ready" }, "Readiness"),
          h("div", {}, o.readiness.ready ? badge("ready") : badge("not ready", "bad")),
          h("ul", {}, parts)),
        h("section", { class: "card", "aria-labelledby": "ov-cluster" },
          h("h2", { id: "ov-cluster" }, h("a", { href: "#/nodes" }, "Cluster")),
          h("div", { class: "big" }, num((o.nodes || []).filter((n) => n.state === "alive").length),
            h("span", { class: "muted" }, ` of ${(o.nodes || []).length} nodes alive`)),
          h("ul", { class: "plain", id: "ov-nodes" }, (o.nodes || []).map((n) =>
            h("li", {}, n.name, " ", badge(n.state), ` ${num(n.running)} running`)))),
      ),
      h("h2", {}, `Running agents (${o.running.length})`),
      table([
        ["Agent", (r) => agentLink(r.id)],
        ["Name", (r) => r.name],
        ["Kind", (r) => r.kind],
        ["State", (r) => badge(r.state)],
        ["Node", (r) => r.node],
        ["Started", (r) => ago(r.started_at)],
        ["PID", (r) => r.pid || "-"],
      ], o.running, "No agent is running."),
    );
  }

  const reload = throttle(load, 1000);
  const off = live.on((e) => {
    seenThisMinute++;
    if (isLifecycle(e) || e.type === "llm.response") reload();
    else if (perMinute.length) {
      perMinute[perMinute.length - 1]++;
      const rate = document.getElementById("ov-rate");
      if (rate) rate.firstChild.textContent = num(perMinute[perMinute.length - 1]);
    }
  });
  const tick = setInterval(load, 15000);
  load();
  return () => { off(); reload.cancel(); clearInterval(tick); };
}
