// Small helpers to build the pages.

// h builds an element: h("a", {href: "#"}, "text", child, ...). Strings are
// text (never HTML); attributes starting with "on" are listeners.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

export function badge(text, cls) { return h("span", { class: "badge " + (cls || text || "") }, text || "-"); }

export function time(t) {
  if (!t) return "-";
  const d = new Date(t);
  if (isNaN(d)) return "-";
  return d.toLocaleString();
}

export function ago(t) {
  if (!t) return "-";
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  if (s < 0) return "in " + dur(-s);
  return dur(s) + " ago";
}

export function dur(s) {
  if (s < 1) return Math.round(s * 1000) + "ms";
  if (s < 60) return Math.round(s) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + Math.round(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

export function usd(v) {
  if (v === null || v === undefined) return "-";
  return "$" + Number(v).toFixed(v < 1 ? 4 : 2);
}

export function num(v) { return v === null || v === undefined ? "-" : Number(v).toLocaleString(); }

// table builds a table: cols are [header, (row) => cell]; rows with
// empty show one line saying so.
export function table(cols, rows, empty, attrs) {
  const head = h("tr", {}, cols.map(([t]) => h("th", { scope: "col" }, t)));
  const body = rows.length
    ? rows.map((r) => h("tr", {}, cols.map(([, f, cls]) => h("td", { class: cls }, f(r)))))
    : [h("tr", {}, h("td", { colspan: cols.length, class: "muted" }, empty))];
  return h("div", { class: "table-wrap" }, h("table", attrs || {}, h("thead", {}, head), h("tbody", {}, body)));
}

// toast shows a message for a while; errors stay until dismissed.
export function toast(msg, kind = "info") {
  const box = document.getElementById("toasts");
  // The same message again (a refresh that keeps failing) is not stacked.
  for (const t of box.children) if (t.firstChild.textContent === msg) return;
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "×");
  const t = h("div", { class: "toast " + kind }, h("p", {}, msg), close);
  close.addEventListener("click", () => t.remove());
  box.append(t);
  if (kind !== "bad") setTimeout(() => t.remove(), 5000);
}

export function showError(e) { toast(e.message || String(e), "bad"); }

// debounce runs fn ms after the calls stop (for typing).
export function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

// throttle runs fn soon after a call and then at most once per ms, however
// steady the calls (live refreshes under a stream of events). cancel()
// drops a pending run.
export function throttle(fn, ms) {
  let last = 0, timer = null;
  const run = () => { timer = null; last = Date.now(); fn(); };
  const t = () => {
    if (timer) return;
    timer = setTimeout(run, Math.max(50, last + ms - Date.now()));
  };
  t.cancel = () => { clearTimeout(timer); timer = null; };
  return t;
}

// rerender replaces el's content with render()'s, keeping the keyboard
// focus on the control with the same label, if it was inside.
export function rerender(el, ...nodes) {
  const active = document.activeElement;
  const label = active && el.contains(active) ? active.getAttribute("aria-label") || active.id : null;
  el.replaceChildren(...nodes);
  if (label) {
    const again = [...el.querySelectorAll("[aria-label], [id]")].find((x) => (x.getAttribute("aria-label") || x.id) === label);
    if (again && !again.disabled) again.focus();
  }
}

// lifecycle events change what lists show; agent.output (a stream of text)
// does not.
export function isLifecycle(e) { return e.type.startsWith("agent.") && e.type !== "agent.output"; }

export function shortId(id) { return id ? id.slice(-8) : "-"; }

export function agentLink(id) {
  return h("a", { href: "#/agents/" + encodeURIComponent(id), class: "mono", title: id }, shortId(id));
}

// sparkline draws values as an SVG line.
export function sparkline(values, label) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 300, hgt = 60, max = Math.max(1, ...values);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("preserveAspectRatio", "none");
  const bg = document.createElementNS(ns, "rect");
  bg.setAttribute("width", w); bg.setAttribute("height", hgt);
  svg.append(bg);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${hgt - 4 - (v / max) * (hgt - 8)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
  return svg;
}

// bar shows used of limit as a labelled meter.
export function bar(label, used, limit, fmt = num) {
  if (!limit) return h("div", {}, h("div", { class: "muted" }, `${label}: ${fmt(used)} (no limit)`));
  const pct = Math.min(100, (100 * used) / limit);
  const cls = pct >= 100 ? "bar bad" : pct >= 80 ? "bar warn" : "bar";
  const fill = h("span", {});
  fill.style.width = pct + "%"; // CSSOM: allowed under the CSP, unlike a style attribute
  return h("div", {},
    h("div", {}, `${label}: ${fmt(used)} / ${fmt(limit)} (${Math.round(pct)}%)`),
    h("div", { class: cls, role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": used }, fill));
}
