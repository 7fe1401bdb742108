// The dashboard's shell: login, navigation, the live event feed, pages.
import { get, post, setUnauthorizedHandler, EventFeed } from "./api.js";
import { showError } from "./ui.js";
import * as overview from "./pages/overview.js";
import * as agents from "./pages/agents.js";
import * as agent from "./pages/agent.js";
import * as events from "./pages/events.js";
import * as approvals from "./pages/approvals.js";
import * as cron from "./pages/cron.js";
import * as budgets from "./pages/budgets.js";
import * as audit from "./pages/audit.js";
import * as system from "./pages/system.js";
import * as nodes from "./pages/nodes.js";

const routes = [
  [/^\/overview$/, overview, "Overview"],
  [/^\/agents$/, agents, "Agents"],
  [/^\/agents\/([^/]+)$/, agent, "Agent"],
  [/^\/events$/, events, "Events"],
  [/^\/approvals$/, approvals, "Approvals"],
  [/^\/cron$/, cron, "Cron"],
  [/^\/budgets$/, budgets, "Budgets"],
  [/^\/audit$/, audit, "Audit"],
  [/^\/nodes$/, nodes, "Nodes"],
  [/^\/system$/, system, "System"],
];

const $ = (id) => document.getElementById(id);

// live: pages subscribe to the shared event feed.
const subscribers = new Set();
const live = {
  on(fn) { subscribers.add(fn); return () => subscribers.delete(fn); },
};

const ctx = { live, me: { name: "", role: "viewer" }, canOperate: () => ctx.me.role !== "viewer", canAdmin: () => ctx.me.role === "admin" };
let feed = null;
let unmount = null;
window.oxios = { loadedAt: Date.now() }; // tests check that pages update without a reload

function showLogin() {
  if (feed) { feed.stop(); feed = null; }
  if (unmount) { unmount(); unmount = null; }
  $("top").hidden = true;
  $("page").replaceChildren();
  $("login").hidden = false;
  $("token").focus();
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    await post("/api/v1/login", { token: $("token").value.trim() });
    $("token").value = "";
    await start();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

async function logout() {
  try {
    await post("/api/v1/logout");
  } catch (e) {
    if (e.status !== 401) { showError(e); return; } // still logged in: say so
  }
  showLogin();
}

function setLive(state, msg) {
  const el = $("live");
  el.textContent = state === "live" ? "live" : state === "reconnecting" ? "reconnecting…" : msg || state;
  el.classList.toggle("on", state === "live");
}

async function refreshPending() {
  try {
    const r = await get("/api/v1/approvals?state=pending");
    const n = r.items.length;
    $("pending-count").textContent = String(n);
    $("pending-count").hidden = n === 0;
  } catch { /* shown on the page itself */ }
}

async function start() {
  ctx.me = await get("/api/v1/whoami");
  $("login").hidden = true;
  $("top").hidden = false;
  $("whoami").textContent = `${ctx.me.name} (${ctx.me.role})`;
  // The audit trail is for admins; others would only meet a 403 there.
  document.querySelector('#nav a[href="#/audit"]').parentElement.hidden = ctx.me.role !== "admin";
  feed = new EventFeed({
    onEvent: (e) => {
      if (e.type.startsWith("approval.")) refreshPending();
      for (const fn of subscribers) fn(e);
    },
    onStatus: setLive,
  }).start();
  refreshPending();
  route();
}

function route(ev) {
  if ($("top").hidden) return;
  const path = location.hash.replace(/^#/, "") || "/overview";
  if (path === "/" || path === "") { location.hash = "#/overview"; return; }
  if (unmount) { unmount(); unmount = null; }
  const root = $("page");
  root.replaceChildren();
  for (const a of document.querySelectorAll("#nav a")) {
    const href = a.getAttribute("href").slice(1);
    if (path === href || path.startsWith(href + "/")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, page, title] of routes) {
    const m = path.match(re);
    if (m) {
      document.title = `${title} · oxios`;
      try {
        unmount = page.mount(root, m.slice(1).map(decodeURIComponent), ctx) || null;
      } catch (e) {
        showError(e);
      }
      if (ev) $("main").focus(); // a new page: start reading (and tabbing) at its top
      return;
    }
  }
  root.textContent = "No such page.";
}

async function boot() {
  setUnauthorizedHandler(showLogin);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  for (let delay = 1000; ; delay = Math.min(delay * 2, 10000)) {
    try {
      await start();
      return;
    } catch (e) {
      if (e.status === 401) { showLogin(); return; }
      // Not reachable, or still starting: say so and try again.
      $("page").replaceChildren(document.createTextNode(`${e.message} — trying again…`));
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

boot();
