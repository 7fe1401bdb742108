import { get, post } from "../api.js";
import { h, badge, table, agentLink, ago, debounce, throttle, rerender, isLifecycle, showError, toast } from "../ui.js";

const states = ["", "queued", "starting", "running", "waiting_approval", "backoff", "succeeded", "failed", "killed"];

// splitArgs splits a command line like a shell would, for quotes and spaces
// only (no expansion).
export function splitArgs(s) {
  const out = [];
  let cur = "", q = null, any = false;
  for (const c of s) {
    if (q) { if (c === q) q = null; else cur += c; continue; }
    if (c === "'" || c === '"') { q = c; any = true; continue; }
    if (/\s/.test(c)) { if (cur || any) out.push(cur); cur = ""; any = false; continue; }
    cur += c;
  }
  if (q) throw new Error("the command has an unclosed quote");
  if (cur || any) out.push(cur);
  return out;
}

function labelsOf(s) {
  const out = {};
  for (const part of s.split(",").map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i < 1) throw new Error(`labels: "${part}" is not KEY=VALUE`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

export function mount(root, _params, ctx) {
  const f = { state: "", kind: "", label: "", name: "", node: "" };
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const count = h("span", { class: "muted", id: "agents-count" });

  const filters = h("form", { class: "row", "aria-label": "Filter agents", onsubmit: (e) => e.preventDefault() },
    h("div", { class: "field" }, h("label", { for: "f-state" }, "State"),
      h("select", { id: "f-state", onchange: (e) => { f.state = e.target.value; load(); } },
        states.map((s) => h("option", { value: s }, s || "any")))),
    h("div", { class: "field" }, h("label", { for: "f-kind" }, "Kind"),
      h("select", { id: "f-kind", onchange: (e) => { f.kind = e.target.value; load(); } },
        ["", "process", "llm"].map((s) => h("option", { value: s }, s || "any")))),
    h("div", { class: "field" }, h("label", { for: "f-name" }, "Name"),
      h("input", { id: "f-name", type: "search", oninput: debounce((e) => { f.name = e.target.value.trim(); load(); }, 300) })),
    h("div", { class: "field" }, h("label", { for: "f-node" }, "Node"),
      h("input", { id: "f-node", type: "search", oninput: debounce((e) => { f.node = e.target.value.trim(); load(); }, 300) })),
    h("div", { class: "field" }, h("label", { for: "f-label" }, "Label (KEY=VALUE)"),
      h("input", { id: "f-label", type: "search", oninput: debounce((e) => { f.label = e.target.value.trim(); load(); }, 300) })),
    h("span", { class: "spacer" }), count);

  root.append(h("h1", {}, "Agents"), spawnForm(ctx, () => load()), h("h2", {}, "All agents"), filters, list);

  async function act(id, what) {
    try {
      const r = await post(`/api/v1/agents/${encodeURIComponent(id)}/${what}${what === "kill" ? "?grace=5s" : ""}`);
      toast(`agent ${id.slice(-8)}: ${r.state}`, "ok");
      load();
    } catch (e) {
      showError(e);
    }
  }

  async function load() {
    const q = new URLSearchParams({ limit: "200" });
    if (f.state) q.set("state", f.state);
    if (f.kind) q.set("kind", f.kind);
    if (f.name) q.set("name", f.name);
    if (f.label) q.set("label", f.label);
    if (f.node) q.set("node", f.node);
    try {
      const r = await get("/api/v1/agents?" + q);
      count.textContent = `${r.items.length}${r.next_cursor ? "+" : ""} shown`;
      const ops = ctx.canOperate();
      rerender(list, table([
        ["Agent", (a) => agentLink(a.id)],
        ["Name", (a) => a.name],
        ["Kind", (a) => a.kind],
        ["State", (a) => badge(a.state)],
        ["Node", (a) => a.node],
        ["Reason", (a) => a.queue_reason || a.reason, "wrap"],
        ["Created", (a) => ago(a.created_at)],
        ["Restarts", (a) => a.restarts],
        ["Actions", (a) => [
          h("button", { type: "button", class: "danger", disabled: !ops || isEnded(a.state),
            "aria-label": `Kill agent ${a.name} ${a.id}`, onclick: () => act(a.id, "kill") }, "Kill"), " ",
          h("button", { type: "button", disabled: !ops || a.state === "queued",
            "aria-label": `Restart agent ${a.name} ${a.id}`, onclick: () => act(a.id, "restart") }, "Restart"),
        ], "actions"],
      ], r.items, "No agents match.", { id: "agents-table" }));
      for (const tr of list.querySelectorAll("tbody tr")) {
        const a = r.items[tr.rowIndex - 1];
        if (a) tr.dataset.id = a.id;
      }
    } catch (e) {
      showError(e);
    }
  }

  const reload = throttle(load, 500);
  const off = ctx.live.on((e) => { if (isLifecycle(e)) reload(); });
  load();
  return () => { off(); reload.cancel(); };
}

function isEnded(s) { return s === "succeeded" || s === "failed" || s === "killed"; }

function spawnForm(ctx, done) {
  const err = h("p", { class: "error", role: "alert", id: "spawn-error" });
  const kind = h("select", { id: "s-kind", name: "kind" }, h("option", { value: "process" }, "process"), h("option", { value: "llm" }, "llm"));
  const procFields = h("div", { class: "form-grid" },
    h("div", { class: "field" }, h("label", { for: "s-command" }, "Command line"),
      h("input", { id: "s-command", name: "command", placeholder: "python3 agent.py --fast", spellcheck: "false" })),
    h("div", { class: "field" }, h("label", { for: "s-restart" }, "Restart policy"),
      h("select", { id: "s-restart", name: "restart" }, ["never", "on-failure", "always"].map((p) => h("option", { value: p }, p)))));
  const llmFields = h("div", { class: "form-grid", hidden: true },
    h("div", { class: "field" }, h("label", { for: "s-goal" }, "Goal"), h("textarea", { id: "s-goal", name: "goal", rows: 2 })),
    h("div", { class: "field" }, h("label", { for: "s-model" }, "Model (provider/model, empty: default)"),
      h("input", { id: "s-model", name: "model", placeholder: "openai/gpt-4.1-mini", spellcheck: "false" })),
    h("div", { class: "field" }, h("label", { for: "s-steps" }, "Max steps (0: default)"),
      h("input", { id: "s-steps", name: "max_steps", type: "number", min: 0, max: 10000, value: 0 })));
  kind.addEventListener("change", () => { procFields.hidden = kind.value !== "process"; llmFields.hidden = kind.value !== "llm"; });
  const common = h("div", { class: "form-grid" },
    h("div", { class: "field" }, h("label", { for: "s-kind" }, "Kind"), kind),
    h("div", { class: "field" }, h("label", { for: "s-name" }, "Name (optional)"), h("input", { id: "s-name", name: "name", spellcheck: "false" })),
    h("div", { class: "field" }, h("label", { for: "s-priority" }, "Priority"),
      h("select", { id: "s-priority", name: "priority" }, ["normal", "high", "critical", "low"].map((p) => h("option", { value: p }, p)))),
    h("div", { class: "field" }, h("label", { for: "s-labels" }, "Labels (KEY=VALUE, comma-separated)"),
      h("input", { id: "s-labels", name: "labels", spellcheck: "false" })));
  const submit = h("button", { type: "submit", class: "primary", id: "s-submit", disabled: !ctx.canOperate() }, "Spawn");
  const form = h("form", { id: "spawn-form" },
    h("fieldset", {}, h("legend", {}, "Spawn an agent"), common, procFields, llmFields, h("div", { class: "row" }, submit), err));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    const v = (id) => form.querySelector("#" + id).value.trim();
    try {
      const spec = { kind: kind.value, name: v("s-name"), priority: v("s-priority") };
      const labels = labelsOf(v("s-labels"));
      if (Object.keys(labels).length) spec.labels = labels;
      if (kind.value === "process") {
        const argv = splitArgs(v("s-command"));
        if (!argv.length) throw new Error("command: enter the program to run, e.g. python3 agent.py");
        spec.command = argv[0];
        spec.args = argv.slice(1);
        spec.restart = { policy: v("s-restart") };
      } else {
        spec.goal = v("s-goal");
        if (v("s-model")) spec.model = v("s-model");
        const steps = Number(v("s-steps"));
        if (steps) spec.max_steps = steps;
      }
      submit.disabled = true;
      const r = await post("/api/v1/agents", spec);
      toast(`spawned ${r.name} (${r.id.slice(-8)}): ${r.state}`, "ok");
      done(r);
    } catch (ex) {
      err.textContent = ex.message;
    } finally {
      submit.disabled = !ctx.canOperate();
    }
  });
  return form;
}
