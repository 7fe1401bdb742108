import { get, post } from "../api.js";
import { h, badge, table, agentLink, ago, time, throttle, rerender, showError, toast } from "../ui.js";

export function mount(root, _params, ctx) {
  const pending = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const decided = h("div", {});
  root.append(h("h1", {}, "Approvals"), h("h2", {}, "Pending"), pending, h("h2", {}, "Decided"), decided);

  async function decide(a, approve, reasonInput) {
    try {
      const reason = reasonInput.value.trim();
      await post(`/api/v1/approvals/${encodeURIComponent(a.id)}/${approve ? "approve" : "reject"}`, reason ? { reason } : {});
      toast(`${approve ? "approved" : "rejected"} ${a.tool} for agent ${a.agent_id.slice(-8)}`, "ok");
      load();
    } catch (e) {
      showError(e);
    }
  }

  async function load() {
    try {
      const all = (await get("/api/v1/approvals")).items;
      const open = all.filter((a) => a.state === "pending");
      const ops = ctx.canOperate();
      // The same requests still pending: keep the rows (and any reason
      // being typed) as they are.
      const ids = open.map((a) => a.id).join(",");
      if (ids !== shown) {
        shown = ids;
        rerender(pending, table([
        ["Agent", (a) => agentLink(a.agent_id)],
        ["Tool", (a) => h("code", {}, a.tool)],
        ["Arguments", (a) => h("code", {}, a.args), "wrap"],
        ["Requested", (a) => ago(a.created_at)],
        ["Expires", (a) => (a.expires_at ? time(a.expires_at) : "never")],
        ["Decision", (a) => {
          const reason = h("input", { type: "text", placeholder: "reason (optional)", "aria-label": `Reason for ${a.tool} of ${a.agent_id}` });
          return h("div", { class: "row" }, reason,
            h("button", { type: "button", class: "primary", disabled: !ops, "aria-label": `Approve ${a.tool} for agent ${a.agent_id}`, onclick: () => decide(a, true, reason) }, "Approve"),
            h("button", { type: "button", class: "danger", disabled: !ops, "aria-label": `Reject ${a.tool} for agent ${a.agent_id}`, onclick: () => decide(a, false, reason) }, "Reject"));
        }, "actions"],
      ], open, "Nothing is waiting for a decision.", { id: "approvals-pending" }));
      }
      const done = all.filter((a) => a.state !== "pending")
        .sort((x, y) => new Date(y.decided_at) - new Date(x.decided_at)).slice(0, 50);
      decided.replaceChildren(table([
        ["Agent", (a) => agentLink(a.agent_id)],
        ["Tool", (a) => h("code", {}, a.tool)],
        ["State", (a) => badge(a.state)],
        ["By", (a) => a.decided_by || "-"],
        ["Reason", (a) => a.reason || "-", "wrap"],
        ["Decided", (a) => ago(a.decided_at)],
      ], done, "None yet."));
    } catch (e) {
      showError(e);
    }
  }

  let shown = null;
  const reload = throttle(load, 300);
  const off = ctx.live.on((e) => { if (e.type.startsWith("approval.")) reload(); });
  load();
  return () => { off(); reload.cancel(); };
}
