import { EventFeed } from "../api.js";
import { h, agentLink, showError } from "../ui.js";

const MAX = 1000;

export function mount(root) {
  let feed = null;
  let paused = false;
  let held = []; // events received while paused
  const rows = h("tbody", { id: "events-body" });
  const status = h("span", { class: "muted", role: "status", id: "events-status" }, "");
  const types = h("input", { id: "ev-types", type: "search", placeholder: "agent.*, cron.fired", spellcheck: "false" });
  const agent = h("input", { id: "ev-agent", type: "search", placeholder: "agent id", spellcheck: "false" });
  const from = h("input", { id: "ev-from", type: "number", min: 0, placeholder: "new events only" });
  const pause = h("button", { type: "button", id: "ev-pause" }, "Pause");
  const lastSeq = h("span", { class: "mono", id: "ev-last" }, "-");

  function add(e) {
    const data = e.data === undefined ? "" : JSON.stringify(e.data);
    const tr = h("tr", { dataset: { seq: e.seq } },
      h("td", { class: "mono" }, e.seq), h("td", {}, new Date(e.time).toLocaleTimeString()),
      h("td", {}, h("code", {}, e.type)), h("td", {}, e.agent_id ? agentLink(e.agent_id) : "-"),
      h("td", { class: "data" }, data.length > 400 ? data.slice(0, 400) + "…" : data));
    rows.prepend(tr);
    while (rows.childElementCount > MAX) rows.lastElementChild.remove();
    lastSeq.textContent = String(e.seq);
  }

  function connect() {
    if (feed) feed.stop();
    rows.replaceChildren();
    held = [];
    const since = from.value === "" ? null : Number(from.value);
    feed = new EventFeed({
      types: types.value.trim(), agent: agent.value.trim(), since,
      onEvent: (e) => {
        if (!paused) { add(e); return; }
        held.push(e);
        if (held.length > MAX) held.splice(0, held.length - MAX); // only the newest MAX are shown anyway
      },
      onStatus: (s, msg) => { status.textContent = s === "live" ? "live" : s === "reconnecting" ? "reconnecting… (will resume after the last event shown)" : msg || s; },
      onGap: (g) => showError(new Error(`events ${g.from}–${g.to} were dropped by retention before they could be shown`)),
    }).start();
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) { for (const e of held) add(e); held = []; }
    status.textContent = paused ? "paused (events are kept and shown on resume)" : "live";
  });

  const form = h("form", { class: "row", "aria-label": "Event filters", onsubmit: (e) => { e.preventDefault(); connect(); } },
    h("div", { class: "field" }, h("label", { for: "ev-types" }, "Types (comma-separated patterns)"), types),
    h("div", { class: "field" }, h("label", { for: "ev-agent" }, "Agent"), agent),
    h("div", { class: "field" }, h("label", { for: "ev-from" }, "Resume after sequence"), from),
    h("button", { type: "submit", class: "primary" }, "Apply"), pause,
    h("span", { class: "spacer" }), h("span", {}, "last seq ", lastSeq, " · ", status));

  root.append(h("h1", {}, "Events"), form,
    h("div", { class: "table-wrap events" }, h("table", { id: "events-table" },
      h("thead", {}, h("tr", {}, ["Seq", "Time", "Type", "Agent", "Data"].map((t) => h("th", { scope: "col" }, t)))), rows)));
  connect();
  return () => { if (feed) feed.stop(); };
}
