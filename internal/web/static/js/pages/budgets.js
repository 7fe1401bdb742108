import { get } from "../api.js";
import { h, badge, bar, num, usd, time, throttle, showError } from "../ui.js";

export function mount(root, _params, ctx) {
  const list = h("div", { class: "grid", id: "budgets" }, h("p", { class: "muted" }, "Loading…"));
  root.append(h("h1", {}, "Budgets"),
    h("p", { class: "muted" }, "Set budgets with ", h("code", {}, "oxios budget set"), " (admin). Usage slides out of each window."), list);

  async function load() {
    try {
      const items = (await get("/api/v1/budgets")).items;
      if (!items.length) {
        list.replaceChildren(h("p", { class: "muted" }, "No budgets: language-model agents are not limited."));
        return;
      }
      list.replaceChildren(...items.map((b) => h("section", { class: "card", "aria-label": `Budget ${b.name}` },
        h("h2", {}, b.name, " ", b.exhausted ? badge("exhausted") : badge("ok")),
        h("p", { class: "muted" }, `window ${b.window}`, b.reset_at ? ` · reset ${time(b.reset_at)}` : ""),
        bar("Tokens", b.used.tokens, b.tokens),
        bar("Cost", b.used.cost_usd, b.cost_usd, usd),
        bar("Calls", b.used.calls, b.calls),
        b.frees_at ? h("p", {}, "frees at ", time(b.frees_at)) : null)));
    } catch (e) {
      showError(e);
    }
  }

  const reload = throttle(load, 1000);
  const off = ctx.live.on((e) => { if (e.type.startsWith("budget.") || e.type === "llm.response") reload(); });
  const tick = setInterval(load, 15000);
  load();
  return () => { off(); reload.cancel(); clearInterval(tick); };
}
