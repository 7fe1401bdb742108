import { get, post, followLogs } from "../api.js";
import { h, badge, time, usd, num, throttle, showError, toast } from "../ui.js";

// stepEvents reads the agent's stored llm.response events: per step, its
// tokens, cost and model latency.
async function stepEvents(id) {
  const res = await fetch(`/api/v1/events?agent=${encodeURIComponent(id)}&type=llm.response&since=0&follow=false`,
    { credentials: "same-origin" });
  if (!res.ok) throw new Error(`the agent's steps could not be read (HTTP ${res.status})`);
  const text = await res.text();
  const steps = {};
  for (const block of text.split("\n\n")) {
    const line = block.split("\n").find((l) => l.startsWith("data:"));
    if (!line) continue;
    try {
      const ev = JSON.parse(line.slice(5));
      if (ev.data && ev.data.step) steps[ev.data.step] = ev.data;
    } catch { /* skip */ }
  }
  return steps;
}

const ended = (s) => s === "succeeded" || s === "failed" || s === "killed";

export function mount(root, [id], ctx) {
  const head = h("div", {});
  const record = h("div", {});
  const detail = h("div", { id: "agent-detail" });
  root.append(head, h("h2", {}, "Record"), record, detail);
  let alive = true; // false once the page is left: late answers are dropped
  let stopLogs = null;
  let following = false;
  let gen = 0;

  function actions(r) {
    const ops = ctx.canOperate();
    const act = async (what) => {
      try {
        const x = await post(`/api/v1/agents/${encodeURIComponent(id)}/${what}${what === "kill" ? "?grace=5s" : ""}`);
        toast(`agent ${id.slice(-8)}: ${x.state}`, "ok");
        load();
      } catch (e) { showError(e); }
    };
    return h("div", { class: "row" },
      h("button", { type: "button", class: "danger", id: "agent-kill", disabled: !ops || ended(r.state), onclick: () => act("kill") }, "Kill"),
      h("button", { type: "button", id: "agent-restart", disabled: !ops || r.state === "queued", onclick: () => act("restart") }, "Restart"));
  }

  async function load() {
    const my = ++gen;
    let r;
    try {
      r = await get(`/api/v1/agents/${encodeURIComponent(id)}`);
    } catch (e) {
      if (!alive) return;
      head.replaceChildren(h("h1", {}, "Agent"), h("p", { class: "error" }, e.message));
      return;
    }
    if (!alive || my !== gen) return;
    head.replaceChildren(
      h("p", {}, h("a", { href: "#/agents" }, "← Agents")),
      h("h1", {}, r.name, " ", badge(r.state, r.state)),
      actions(r));
    const u = r.usage || {};
    const facts = [
      ["ID", h("code", {}, r.id)], ["Kind", r.kind], ["State", badge(r.state)], ["Reason", r.queue_reason || r.reason || "-"],
      ["Node", r.node], ["Created", time(r.created_at)], ["Started", time(r.started_at)], ["Ended", time(r.ended_at)],
      ["Restarts", r.restarts], ["Priority", r.spec.priority], ["Labels", Object.entries(r.spec.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-"],
    ];
    if (r.kind === "process") {
      facts.push(["Command", h("code", {}, [r.spec.command, ...(r.spec.args || [])].join(" "))], ["PID", r.pid || "-"],
        ["Exit code", r.exit_code ?? "-"], ["Signal", r.signal || "-"], ["Restart policy", r.spec.restart.policy]);
    } else {
      facts.push(["Model", r.model || r.spec.model], ["Goal", r.spec.goal], ["Steps", r.steps || 0],
        ["Tokens", `${num(u.tokens_in)} in, ${num(u.tokens_out)} out`], ["Cost", usd(u.cost_usd)], ["Tool calls", num(u.tool_calls)]);
    }
    const sb = r.sandbox;
    if (sb) {
      const lim = sb.limits || {};
      const limits = [["memory", lim.memory_mb, " MiB"], ["CPU", lim.cpu_seconds, " s"], ["files", lim.open_files, ""],
        ["processes", lim.processes, ""], ["file size", lim.file_size_mb, " MiB"]].filter(([, v]) => v).map(([k, v, unit]) => `${k} ${v}${unit}`);
      facts.push(["Sandbox", sb.mode === "off" ? "off" : `${sb.mode}, Landlock ABI ${sb.landlock_abi || "none"}`],
        ["Network", sb.network + (sb.network_by ? ` (by ${sb.network_by})` : "")],
        ["Writes", (sb.write || []).join(", ") || "-"], ["Limits", limits.join(", ") || "none"],
        ["Not enforced", (sb.unenforced || []).join("; ") || "-"]);
    }
    record.replaceChildren(h("dl", { class: "kv card" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    if (r.kind === "process") {
      // (Re)start following the log when the agent runs again (a restart
      // keeps its id); a finished follow said all there was.
      if (!following && !(stopLogs && ended(r.state))) startLogs();
    } else {
      renderTimeline(r, my);
    }
  }

  function startLogs() {
    if (stopLogs) stopLogs();
    following = true;
    const logBox = h("pre", { class: "log", id: "agent-log", tabindex: 0, "aria-label": "Agent output" });
    const status = h("p", { class: "muted", id: "log-status", role: "status" }, "following the log…");
    detail.replaceChildren(h("h2", {}, "Output"), status, logBox);
    const lines = [];
    stopLogs = followLogs(id, 200, (line) => {
      lines.push(line);
      if (lines.length > 2000) lines.splice(0, lines.length - 2000);
      const stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.textContent = lines.join("\n");
      if (stick) logBox.scrollTop = logBox.scrollHeight;
    }, () => {
      following = false;
      status.textContent = "the agent has ended; this is all of its output";
    }, (e) => {
      following = false;
      status.textContent = "log: " + e.message;
    });
  }

  async function renderTimeline(r, my) {
    let steps = {};
    try {
      steps = await stepEvents(id);
    } catch (e) {
      showError(e);
    }
    if (!alive || my !== gen) return;
    const byStep = {};
    for (const c of r.tool_calls || []) (byStep[c.step] ||= []).push(c);
    const nums = [...new Set([...Object.keys(steps), ...Object.keys(byStep)].map(Number))].sort((a, b) => a - b);
    const items = nums.map((n) => {
      const s = steps[n] || {};
      return h("li", {},
        h("div", { class: "head" }, h("strong", {}, `Step ${n}`),
          s.duration_ms !== undefined ? h("span", { class: "muted" }, `model ${s.duration_ms} ms`) : null,
          s.tokens_in !== undefined ? h("span", { class: "muted" }, `${num(s.tokens_in)} in / ${num(s.tokens_out)} out tokens`) : null,
          s.cost_usd !== undefined ? h("span", { class: "muted" }, usd(s.cost_usd)) : null),
        (byStep[n] || []).length
          ? h("ul", {}, byStep[n].map((c) => h("li", {},
            badge(c.denied ? "denied" : c.error ? "error" : "ok", c.denied || c.error ? "bad" : "ok"), " ",
            h("code", {}, c.name), " ", h("span", { class: "muted" }, `${c.duration_ms} ms`), " ",
            h("code", { class: "muted" }, c.args),
            c.error ? h("div", { class: "error" }, c.error) : c.result ? h("div", { class: "muted" }, c.result) : null)))
          : h("p", { class: "muted" }, "no tool calls: the answer"));
    });
    detail.replaceChildren(
      h("h2", {}, "Output"), r.output ? h("pre", { class: "output", id: "agent-output" }, r.output) : h("p", { class: "muted" }, "No output yet."),
      r.output_truncated ? h("p", { class: "muted", id: "agent-output-cut" }, `Only the start is shown: the output is ${num(r.output_bytes)} bytes. `,
        h("a", { href: `/api/v1/agents/${encodeURIComponent(r.id)}/output`, target: "_blank", rel: "noopener" }, "The whole output")) : null,
      h("h2", {}, "Timeline"), items.length ? h("ol", { class: "timeline", id: "agent-timeline" }, items) : h("p", { class: "muted" }, "No steps yet."));
  }

  const reload = throttle(load, 1000);
  const off = ctx.live.on((e) => { if (e.agent_id === id) reload(); });
  load();
  return () => { alive = false; off(); reload.cancel(); if (stopLogs) stopLogs(); };
}
