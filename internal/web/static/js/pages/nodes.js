import { get, post } from "../api.js";
import { h, badge, table, ago, num, rerender, throttle, showError, toast } from "../ui.js";

// The nodes of the cluster, as the answering node sees them.
export function mount(root, _params, ctx) {
  const list = h("div", { id: "nodes" }, h("p", { class: "muted" }, "Loading…"));
  root.append(h("h1", {}, "Nodes"),
    h("p", { class: "muted" }, "A node is alive while it beats, suspect after a missed beat, dead after ",
      h("code", {}, "cluster.lease"), ", left once stopped. A drained node takes no new agents and moves its own to the others. This dashboard is served by the node marked *."), list);

  async function drain(name, on) {
    try {
      await post(`/api/v1/nodes/${encodeURIComponent(name)}/${on ? "drain" : "undrain"}`);
      toast(`node ${name} ${on ? "drained" : "undrained"}`, "ok");
      load();
    } catch (e) {
      showError(e);
    }
  }

  async function load() {
    try {
      const r = await get("/api/v1/nodes");
      rerender(list, table([
        ["Node", (n) => n.name + (n.name === r.self ? " *" : "")],
        ["State", (n) => n.drained ? h("span", {}, badge(n.state), " ", badge("drained", "warn drained")) : badge(n.state)],
        ["Address", (n) => h("a", { href: n.address }, n.address)],
        ["Running", (n) => num(n.running)],
        ["Free slots", (n) => num(n.free_slots)],
        ["Version", (n) => n.version],
        ["Started", (n) => ago(n.started_at)],
        ["Labels", (n) => Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-"],
        ["", (n) => h("button", { type: "button", disabled: !ctx.canAdmin(), "data-action": n.drained ? "undrain" : "drain", onclick: () => drain(n.name, !n.drained) },
          n.drained ? "Undrain" : "Drain")],
      ], r.items, "No nodes.", { id: "nodes-table" }));
      for (const tr of list.querySelectorAll("tbody tr")) {
        const n = r.items[tr.rowIndex - 1];
        if (n) tr.dataset.node = n.name;
      }
    } catch (e) {
      showError(e);
    }
  }

  const reload = throttle(load, 500);
  const off = ctx.live.on((e) => { if (e.type.startsWith("node.")) reload(); });
  const tick = setInterval(load, 2000); // states age without events
  load();
  return () => { off(); reload.cancel(); clearInterval(tick); };
}
