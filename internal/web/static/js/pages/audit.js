import { get } from "../api.js";
import { h, table, time, throttle, rerender } from "../ui.js";

export function mount(root, _params, ctx) {
  const result = h("p", { role: "status", id: "audit-verdict", class: "muted" }, "");
  const verify = h("button", { type: "button", class: "primary", id: "audit-verify" }, "Verify the chain");
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.append(h("h1", {}, "Audit trail"),
    h("div", { class: "row" }, verify, result), h("h2", {}, "Recent entries"), list);

  verify.addEventListener("click", async () => {
    verify.disabled = true;
    result.textContent = "verifying…";
    try {
      const v = await get("/api/v1/audit/verify");
      result.className = v.ok ? "" : "error";
      result.textContent = v.ok
        ? `✓ ${v.entries} entries verified: the chain is intact`
        : `✗ broken at entry ${v.first_broken}: ${v.reason}`;
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    } finally {
      verify.disabled = false;
    }
  });

  async function load() {
    try {
      const items = (await get("/api/v1/audit?tail=100&limit=100")).items.reverse();
      rerender(list, table([
        ["Seq", (e) => e.seq],
        ["Time", (e) => time(e.time)],
        ["Actor", (e) => e.actor],
        ["Action", (e) => h("code", {}, e.action)],
        ["Resource", (e) => e.resource, "wrap"],
        ["Outcome", (e) => e.outcome],
        ["Detail", (e) => (e.detail ? h("code", {}, JSON.stringify(e.detail)) : "-"), "wrap"],
      ], items, "The audit trail is empty.", { id: "audit-table" }));
    } catch (e) {
      list.replaceChildren(h("p", { class: "error" }, e.message));
    }
  }

  // Most audited actions also publish an event: refresh on those (not on
  // the stream of agent output), at most every 2 s.
  const reload = throttle(load, 2000);
  const off = ctx.live.on((e) => { if (e.type !== "agent.output" && e.type !== "llm.response" && !e.type.startsWith("tool.")) reload(); });
  load();
  return () => { off(); reload.cancel(); };
}
