package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/oxios"
)

// The dashboard in a real headless Chromium (Debian's chromium), driven by
// chromedp against a real daemon. Without Chromium the tests skip, unless
// OXIOS_REQUIRE_TOOLS is set (CI sets it after installing Chromium). Each
// test saves screenshots into one artifacts directory per run
// ($OXIOS_ARTIFACTS, or a new temporary directory, named in the log).

var (
	artifactsOnce sync.Once
	artifactsDir  string
)

func artifacts(t *testing.T) string {
	artifactsOnce.Do(func() {
		artifactsDir = os.Getenv("OXIOS_ARTIFACTS")
		if artifactsDir == "" {
			artifactsDir, _ = os.MkdirTemp("", "oxios-dashboard-artifacts-")
		}
		os.MkdirAll(artifactsDir, 0o755)
	})
	return artifactsDir
}

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts a headless Chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if os.Getenv("OXIOS_REQUIRE_TOOLS") != "" {
			t.Fatal("Chromium is required (OXIOS_REQUIRE_TOOLS) but not installed: apt-get install chromium")
		}
		t.Skip("dashboard browser test skipped: Chromium is not installed (Debian package chromium; .ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	bounded, cancelTimeout := context.WithTimeout(context.Background(), 3*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(bounded, opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc(); cancelTimeout() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// shot saves a screenshot of the page.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(artifacts(t), fmt.Sprintf("%s-%s.png", t.Name(), name))
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s", p)
}

type step = chromedp.Action[chromedp.Void]

// do runs browser steps; on failure it saves a screenshot and shows the
// page's text.
func do(t *testing.T, ctx context.Context, what string, steps ...step) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a step, not the browser
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		fail(t, ctx, what, err)
	}
}

func fail(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	shot(t, ctx, "failed")
	text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr))
	if err != nil {
		fail(t, ctx, expr, err)
	}
	return v
}

// until waits for a JavaScript expression to be true.
func until(t *testing.T, ctx context.Context, what, expr string, within time.Duration) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, within+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(sctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(within))); err != nil {
		fail(t, ctx, what, err)
	}
}

func visible(sel string) step { return chromedp.WaitVisible(chromedp.CSS(sel)) }

// click clicks the element the selector finds when it is clicked (a live
// page may have replaced the one found a moment before).
func click(sel string) step {
	return chromedp.Steps(visible(sel), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](`(el => { if (!el) return false; el.click(); return true })(document.querySelector(`+strconvQuote(sel)+`))`)(ctx, tg)
		if err == nil && !ok {
			err = fmt.Errorf("nothing to click at %s", sel)
		}
		return err
	}))
}
func keys(sel, v string) step { return chromedp.SendKeys(chromedp.CSS(sel), v) }

// value sets a form field's value as a script would.
func value(sel, v string) step {
	js, _ := json.Marshal(v)
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(el => { el.value = `+string(js)+`; el.dispatchEvent(new Event("input")); return true })(document.querySelector(`+strconvQuote(sel)+`))`)(ctx, tg)
		return err
	})
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// loginLink logs the browser in with a one-time link from `oxios dashboard`.
func (e *env) loginLink(t *testing.T, ctx context.Context) {
	t.Helper()
	r := e.oxios("dashboard", "--print")
	if r.code != 0 || !strings.Contains(r.stdout, "/login?code=") {
		t.Fatalf("dashboard --print: %s", r)
	}
	do(t, ctx, "log in with the link", chromedp.Navigate(strings.TrimSpace(r.stdout)), visible("#top"), visible("#ov-total"))
	// The link works once.
	code := strings.TrimPrefix(strings.TrimSpace(r.stdout), "http://"+e.listen+"/login?code=")
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.listen+"/login", strings.NewReader("code="+code))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+e.listen)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a used link logged in again: %d", resp.StatusCode)
	}
}

func goTo(hash string) step {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[string](`location.hash = "`+hash+`"`)(ctx, tg)
		return err
	})
}

// Log in with a token; spawn an agent from the form and see it appear;
// kill it and see its state change, all without a reload; the same pages
// fit a phone's width.
func TestDashboardSpawnAndKill(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	r := e.oxios("token", "create", "ui", "--role", "operator")
	if r.code != 0 {
		t.Fatal(r)
	}
	secret := strings.TrimSpace(r.stdout)
	ctx := browser(t)
	base := "http://" + e.listen

	do(t, ctx, "login page", chromedp.Navigate(base+"/"), visible("#login-form"))
	// A wrong token is refused with the API's message, shown on the page.
	do(t, ctx, "wrong token", keys("#token", "oxs_wrong"), click("#login-form button"),
		visible(`#login-error`))
	until(t, ctx, "error text", `document.querySelector("#login-error").textContent !== ""`, 10*time.Second)
	msg := eval[string](t, ctx, `document.querySelector("#login-error").textContent`)
	if !strings.Contains(msg, "invalid") {
		t.Fatalf("login error shown: %q", msg)
	}
	do(t, ctx, "log in", value("#token", ""), keys("#token", secret),
		click("#login-form button"), visible("#ov-total"))
	who := eval[string](t, ctx, `document.querySelector("#whoami").textContent`)
	if who != "ui (operator)" {
		t.Fatalf("whoami: %q", who)
	}
	loadedAt := eval[float64](t, ctx, `window.oxios.loadedAt`)
	shot(t, ctx, "overview")

	do(t, ctx, "spawn", goTo("#/agents"), visible("#spawn-form"),
		keys("#s-command", "sleep 300"), keys("#s-name", "napper"),
		click("#s-submit"),
		visible(`#agents-table tr[data-id] .badge.running`))
	id := eval[string](t, ctx, `document.querySelector("#agents-table tr[data-id]").dataset.id`)
	if rec := e.agent(id); rec.Name != "napper" || rec.State != oxios.Running || rec.Spec.Command != "sleep" {
		t.Fatalf("spawned from the form: %+v", rec)
	}
	shot(t, ctx, "spawned")

	do(t, ctx, "kill", click(`#agents-table tr[data-id="`+id+`"] button.danger`),
		visible(`#agents-table tr[data-id="`+id+`"] .badge.killed`))
	if rec := e.agent(id); rec.State != oxios.Killed {
		t.Fatalf("after the kill button: %s", rec.State)
	}
	// A change made elsewhere shows up too, from the event stream.
	other := e.spawnJSON("--name", "outsider", "--", "sleep", "300")
	do(t, ctx, "live row", visible(`#agents-table tr[data-id="`+other.ID+`"] .badge.running`))
	e.oxios("agent", "kill", other.ID)
	do(t, ctx, "live kill", visible(`#agents-table tr[data-id="`+other.ID+`"] .badge.killed`))
	if after := eval[float64](t, ctx, `window.oxios.loadedAt`); after != loadedAt {
		t.Fatal("the page was reloaded")
	}
	shot(t, ctx, "killed")

	// A bad spawn shows the API's error next to the form.
	do(t, ctx, "bad spawn", value("#s-command", ""), keys("#s-command", "sleep 1"),
		value("#s-labels", "bad label=x"), click("#s-submit"))
	until(t, ctx, "spawn error", `document.querySelector("#spawn-error").textContent !== ""`, 10*time.Second)
	msg = eval[string](t, ctx, `document.querySelector("#spawn-error").textContent`)
	if !strings.Contains(msg, "labels.bad label") {
		t.Fatalf("spawn error shown: %q", msg)
	}

	// Every page renders at a phone's width without the page itself
	// scrolling sideways (wide tables scroll in their own box).
	do(t, ctx, "phone", chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"overview", "agents", "agents/" + id, "events", "approvals", "cron", "budgets", "audit", "nodes", "system"} {
		do(t, ctx, page, goTo("#/"+page), visible("#page h1"))
		until(t, ctx, page+" loaded", `!document.querySelector("#page").textContent.includes("Loading…") && document.querySelector("#page .table-wrap, #page .grid, #page .kv, #page .card, #page p.error") !== null`, 10*time.Second)
		if eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
			shot(t, ctx, "phone-"+strings.ReplaceAll(page, "/", "-"))
			t.Errorf("%s overflows a 390px screen", page)
		}
	}
	shot(t, ctx, "phone")
}

// A pending approval is approved from the approvals page; the agent goes
// on and finishes.
func TestDashboardApproval(t *testing.T) {
	e := newEnv(t)
	llm := agenttest.New(t, e2eKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("w1", "write_file", map[string]string{"path": "out.txt", "content": "approved"})}},
		agenttest.Reply{Text: "done"})
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[policy]\nask = [\"write_file\"]\n"), 0o600)
	e.startWithModel(llm)
	e.stopAtEnd()
	ctx := browser(t)
	e.loginLink(t, ctx)
	do(t, ctx, "approvals page", goTo("#/approvals"), visible("#approvals-pending"))

	ws := t.TempDir()
	rec := e.spawnJSON("--kind", "llm", "--goal", "write out.txt", "--dir", ws)
	do(t, ctx, "pending shown", visible(`#approvals-pending button.primary`),
		visible(`#pending-count`))
	shot(t, ctx, "pending")
	do(t, ctx, "approve", keys(`#approvals-pending input`, "fine by me"),
		click(`#approvals-pending button.primary`),
		chromedp.WaitNotPresent(chromedp.CSS(`#approvals-pending button.primary`)))
	if r := e.oxios("agent", "wait", rec.ID, "--timeout", "30s"); r.code != 0 {
		t.Fatalf("the agent did not finish after the approval: %s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "out.txt")); string(b) != "approved" {
		t.Fatalf("out.txt: %q", b)
	}
	until(t, ctx, "decided", `document.querySelector("#page").textContent.includes("fine by me")`, 10*time.Second)
	shot(t, ctx, "approved")

	// The agent's page shows the llm timeline: the tool call and the answer.
	do(t, ctx, "agent page", goTo("#/agents/"+rec.ID), visible("#agent-timeline"),
		visible("#agent-output"))
	timeline := eval[string](t, ctx, `document.querySelector("#agent-timeline").textContent`)
	if !strings.Contains(timeline, "write_file") || !strings.Contains(timeline, "Step 2") {
		t.Fatalf("timeline: %q", timeline)
	}
	shot(t, ctx, "timeline")
}

// The events view follows the stream; when the daemon restarts it resumes
// after the last event it showed: events published meanwhile are all
// there, once each, in order.
func TestDashboardEventsResumeAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stopAtEnd()
	ctx := browser(t)
	e.loginLink(t, ctx)
	do(t, ctx, "events page", goTo("#/events"), visible("#events-table"))
	until(t, ctx, "live", `document.querySelector("#events-status").textContent === "live"`, 15*time.Second)

	publish := func(from, to int) {
		t.Helper()
		var evs []map[string]any
		for i := from; i <= to; i++ {
			evs = append(evs, map[string]any{"type": "custom.tick", "data": map[string]int{"n": i}})
		}
		b, _ := json.Marshal(evs)
		req, _ := http.NewRequest(http.MethodPost, "http://"+e.listen+"/api/v1/events", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+e.token())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	publish(1, 5)
	until(t, ctx, "first events", `document.querySelectorAll("#events-body tr").length >= 5`, 15*time.Second)
	shot(t, ctx, "before-restart")

	if r := e.oxios("restart"); r.code != 0 {
		t.Fatalf("restart: %s", r)
	}
	// Published at once, before the page can have reconnected.
	publish(6, 10)
	until(t, ctx, "resumed", `[...document.querySelectorAll("#events-body tr")].filter(tr => tr.textContent.includes("custom.tick")).length >= 10`, 30*time.Second)
	seqs := eval[[]int](t, ctx, `[...document.querySelectorAll("#events-body tr")].map(tr => Number(tr.dataset.seq))`)
	ticks := eval[[]int](t, ctx, `[...document.querySelectorAll("#events-body tr")].filter(tr => tr.textContent.includes("custom.tick")).map(tr => JSON.parse(tr.lastChild.textContent).n)`)
	// Newest first, every sequence once, none missing in between.
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]-1 {
			t.Fatalf("the event view skipped or repeated events: %v", seqs)
		}
	}
	if fmt.Sprint(ticks) != "[10 9 8 7 6 5 4 3 2 1]" {
		t.Fatalf("custom events shown: %v", ticks)
	}
	shot(t, ctx, "after-restart")
}
