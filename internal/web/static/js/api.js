// The REST API and the event stream, with the session cookie.

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || "";
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

// api calls the API and returns the decoded JSON (null for 204). A non-2xx
// answer throws an ApiError with the message of the error envelope.
export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the daemon is not reachable (" + e.message + ")");
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = data && data.error;
    const msg = err && err.message ? err.message : `${method} ${path}: HTTP ${res.status}`;
    if (res.status === 401 && path !== "/api/v1/login") onUnauthorized();
    throw new ApiError(res.status, msg, err && err.field);
  }
  return data;
}

export const get = (p) => api("GET", p);
export const post = (p, b) => api("POST", p, b);
export const put = (p, b) => api("PUT", p, b);
export const del = (p) => api("DELETE", p);

// readSSE reads a Server-Sent Events response, calling fn({id, event,
// data}) per message (comment-only blocks with an id are passed too, with
// event "" and data null).
async function readSSE(res, fn, signal, idle) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  while (!signal.aborted) {
    // The daemon sends a heartbeat every 15 s: silence for longer than
    // idle ms means a dead connection (a laptop that slept), not a quiet one.
    let timer = null;
    const timeout = idle ? new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("the event stream went silent")), idle); }) : null;
    let chunk;
    try {
      chunk = await (timeout ? Promise.race([reader.read(), timeout]) : reader.read());
    } finally {
      clearTimeout(timer);
    }
    const { value, done } = chunk;
    if (done) return;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const msg = { id: null, event: "", data: null };
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const c = line.indexOf(":");
        const k = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
        if (k === "id") msg.id = v;
        else if (k === "event") msg.event = v;
        else if (k === "data") data.push(v);
      }
      if (data.length) msg.data = data.join("\n");
      if (msg.id !== null || msg.data !== null) fn(msg);
    }
  }
}

// EventFeed follows /api/v1/events and goes on where it stopped after any
// break (a network error, a daemon restart): it reconnects with
// ?since=<last sequence seen>, so no event is lost or repeated.
export class EventFeed {
  constructor({ types = "", agent = "", since = null, onEvent, onStatus = () => {}, onGap = () => {} }) {
    Object.assign(this, { types, agent, last: since, onEvent, onStatus, onGap });
    this.ctl = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.ctl) this.ctl.abort();
  }

  async loop() {
    let delay = 500;
    while (!this.stopped) {
      this.ctl = new AbortController();
      const q = new URLSearchParams();
      if (this.types) q.set("type", this.types);
      if (this.agent) q.set("agent", this.agent);
      if (this.last !== null) q.set("since", String(this.last));
      try {
        const res = await fetch("/api/v1/events?" + q, { credentials: "same-origin", signal: this.ctl.signal,
          headers: { Accept: "text/event-stream" } });
        if (res.status === 401) { onUnauthorized(); return; }
        if (res.status >= 400 && res.status < 500) {
          // Bad filters: retrying cannot help; say what is wrong.
          let msg = "HTTP " + res.status;
          try { msg = (await res.json()).error.message; } catch { /* keep */ }
          this.stopped = true;
          this.onStatus("error", msg);
          return;
        }
        if (!res.ok) throw new Error("HTTP " + res.status);
        this.onStatus("live");
        delay = 500;
        await readSSE(res, (m) => {
          if (m.event === "bus.gap") { this.onGap(JSON.parse(m.data)); return; }
          if (m.event === "error") { this.onStatus("error", JSON.parse(m.data).message); return; }
          if (m.id !== null && m.id !== "") this.last = Number(m.id);
          if (m.data !== null) this.onEvent(JSON.parse(m.data));
        }, this.ctl.signal, 45000);
      } catch (e) {
        if (this.stopped) return;
        this.ctl.abort();
      }
      if (this.stopped) return;
      this.onStatus("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 4000);
    }
  }
}

// followLogs follows an agent's log (SSE), calling onLine per line and
// onEnd once the agent has ended and its output is drained.
export function followLogs(id, lines, onLine, onEnd, onError) {
  const ctl = new AbortController();
  (async () => {
    try {
      const res = await fetch(`/api/v1/agents/${encodeURIComponent(id)}/logs?follow=1&lines=${lines}`,
        { credentials: "same-origin", signal: ctl.signal, headers: { Accept: "text/event-stream" } });
      if (!res.ok) {
        let msg = "HTTP " + res.status;
        try { msg = (await res.json()).error.message; } catch { /* keep */ }
        throw new Error(msg);
      }
      await readSSE(res, (m) => {
        if (m.event === "line") onLine(JSON.parse(m.data));
        else if (m.event === "end") onEnd();
      }, ctl.signal);
    } catch (e) {
      if (!ctl.signal.aborted) onError(e);
    }
  })();
  return () => ctl.abort();
}
