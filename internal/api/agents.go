package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/metrics"
	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/supervisor"
)

const maxSpecBody = 1 << 20

// bodyReadTimeout is how long a request body may take to arrive.
var bodyReadTimeout = oxios.RequestReadTimeout

// decodeJSON reads one JSON object of at most limit bytes into v, strictly:
// unknown fields and trailing data are errors naming what is wrong.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	// A body sent slowly, or never finished, is cut at bodyReadTimeout
	// (readDeadline).
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", limit), "")
		} else {
			writeError(w, http.StatusBadRequest, "cannot read the request body: "+err.Error(), "")
		}
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		return true
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var sbe *sandbox.InvalidError
	switch {
	case errors.As(err, &sbe):
		writeError(w, http.StatusBadRequest, sbe.Error(), sbe.Field)
	case errors.As(err, &te):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: must be %s (got %s)", te.Field, jsonKind(te.Type.Kind().String()), te.Value), te.Field)
	case errors.As(err, &se):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the body is not valid JSON (at byte %d): %v", se.Offset, err), "")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: unknown field", field), field)
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "the body must be a JSON object", "")
	default:
		writeError(w, http.StatusBadRequest, "the body is not valid JSON: "+err.Error(), "")
	}
	return false
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "true or false"
	default:
		return "a number"
	}
}

func (s *Server) agentSpawn(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	var spec supervisor.Spec
	if !decodeJSON(w, r, maxSpecBody, &spec) {
		return
	}
	if spec.Parent != "" {
		writeError(w, http.StatusBadRequest, "parent: is set by oxios for the sub-agents of spawn_agent and cannot be given", "parent")
		return
	}
	rec, err := svc.Agents.Spawn(asCaller(r), spec)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	detail := map[string]any{"kind": rec.Kind, "name": rec.Name}
	if rec.Kind == supervisor.KindLLM {
		detail["model"] = rec.Spec.Model
	} else {
		detail["command"] = rec.Spec.Command
	}
	s.audit(r, audit.Entry{Action: "agent.spawn", Resource: "agent/" + rec.ID, Detail: detail})
	w.Header().Set("Location", "/api/v1/agents/"+rec.ID)
	writeJSON(w, http.StatusCreated, shown(r, rec))
}

type agentList struct {
	Items      []supervisor.Record `json:"items"`
	NextCursor string              `json:"next_cursor"`
}

func (s *Server) agentList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "state", "kind", "label", "name", "node", "limit", "cursor") {
		return
	}
	f := supervisor.Filter{Kind: q.Get("kind"), Name: q.Get("name"), Node: q.Get("node")}
	for _, v := range q["state"] {
		for _, st := range strings.Split(v, ",") {
			st = strings.TrimSpace(st)
			if st == "" {
				continue
			}
			known := false
			for _, k := range supervisor.States {
				known = known || string(k) == st
			}
			if !known {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("state: unknown state %q (allowed: queued, starting, running, waiting_approval, backoff, succeeded, failed, killed)", st), "state")
				return
			}
			f.States = append(f.States, supervisor.State(st))
		}
	}
	if f.Kind != "" && f.Kind != supervisor.KindProcess && f.Kind != supervisor.KindLLM {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("kind: must be process or llm (got %q)", f.Kind), "kind")
		return
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("label: must be key=value (got %q)", l), "label")
			return
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	limit, ok := intParam(w, q.Get("limit"), "limit", 100, 1, 1000)
	if !ok {
		return
	}
	items, next := svc.Agents.List(f, limit, q.Get("cursor"))
	for i := range items {
		items[i] = shown(r, items[i])
	}
	writeJSON(w, http.StatusOK, agentList{Items: items, NextCursor: next})
}

// intParam parses an optional integer query parameter within [min, max].
func intParam(w http.ResponseWriter, v, field string, def, min, max int) (int, bool) {
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: must be a whole number from %d to %d (got %q)", field, min, max, v), field)
		return 0, false
	}
	return n, true
}

// durationParam parses an optional duration query parameter within [0, max].
func durationParam(w http.ResponseWriter, v, field string, def, max time.Duration) (time.Duration, bool) {
	if v == "" {
		return def, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: must be a duration from 0s to %s such as \"30s\" (got %q)", field, max, v), field)
		return 0, false
	}
	return d, true
}

func (s *Server) agentGet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	rec, err := svc.Agents.Get(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(r, rec))
}

// agentWait answers when the agent has ended or after timeout, whichever
// comes first, with the record either way: the state says which.
func (s *Server) agentWait(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "timeout") {
		return
	}
	timeout, ok := durationParam(w, q.Get("timeout"), "timeout", 30*time.Second, 10*time.Minute)
	if !ok {
		return
	}
	ctx, cancel := s.untilStopping(r.Context())
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()
	rec, err := svc.Agents.Wait(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(r, rec))
}

func (s *Server) agentKill(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "grace") {
		return
	}
	grace := time.Duration(-1)
	if q.Get("grace") != "" {
		var ok bool
		if grace, ok = durationParam(w, q.Get("grace"), "grace", 0, time.Hour); !ok {
			return
		}
	}
	ctx, cancel := s.untilStopping(r.Context())
	defer cancel()
	rec, err := svc.Agents.Kill(ctx, r.PathValue("id"), grace)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "agent.kill", Resource: "agent/" + rec.ID, Detail: map[string]any{"state": rec.State}})
	writeJSON(w, http.StatusOK, shown(r, rec))
}

func (s *Server) agentRestart(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	rec, err := svc.Agents.Restart(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "agent.restart", Resource: "agent/" + rec.ID})
	writeJSON(w, http.StatusOK, shown(r, rec))
}

func (s *Server) agentDelete(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	if err := svc.Agents.Delete(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, audit.Entry{Action: "agent.delete", Resource: "agent/" + r.PathValue("id")})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) schedulerGet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, svc.Agents.Scheduler())
}

// untilStopping is ctx, also cancelled when the server begins to shut
// down, so requests that wait (wait, kill, log streams) do not hold up a
// graceful shutdown.
func (s *Server) untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// agentOutput serves the whole output of an llm agent, as text: the record
// holds at most its first supervisor.OutputPreview bytes.
func (s *Server) agentOutput(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	out, size, err := svc.Agents.Output(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer out.Close()
	keepOpen(w)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, out); err != nil {
		s.Logger.Warn("send an agent's output", "agent", r.PathValue("id"), "err", err)
	}
}

// LogLines is the answer of GET /api/v1/agents/{id}/logs.
type LogLines = oxios.LogLines

// agentLogs answers the last lines of an agent's log; with follow, it
// streams them and then every new line as server-sent events (one line per
// event), until the agent has ended and its output is drained.
func (s *Server) agentLogs(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "lines", "follow") {
		return
	}
	id := r.PathValue("id")
	if _, err := svc.Agents.Get(id); err != nil {
		s.fail(w, r, err)
		return
	}
	n, ok := intParam(w, q.Get("lines"), "lines", 100, 0, 100000)
	if !ok {
		return
	}
	follow := false
	switch v := q.Get("follow"); v {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("follow: must be true or false (got %q)", v), "follow")
		return
	}
	lines, cursor, err := svc.Agents.LogTail(r.Context(), id, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if lines == nil {
		lines = []string{}
	}
	if !follow {
		writeJSON(w, http.StatusOK, LogLines{Lines: lines})
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported on this connection", "")
		return
	}
	metrics.SSEClients.Inc()
	defer metrics.SSEClients.Dec()
	keepOpen(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &sseLines{w: bufio.NewWriter(w), fl: fl}
	for _, l := range lines {
		sw.line(l)
	}
	sw.flush()

	ctx, cancel := s.untilStopping(r.Context())
	defer cancel()
	// Read on (from the agent's node, if it is another's) until the agent
	// has ended and its log is read to the end.
	for ctx.Err() == nil {
		data, next, ended, err := svc.Agents.LogRead(ctx, id, cursor, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Warn("follow an agent's log", "agent", id, "err", err)
			}
			break
		}
		cursor = next
		if len(data) > 0 {
			if _, err := sw.Write(data); err != nil {
				return
			}
		}
		if ended {
			break
		}
	}
	sw.rest()
	sw.w.WriteString("event: end\ndata: {}\n\n")
	sw.flush()
}

// sseLines turns bytes into one server-sent event per line.
type sseLines struct {
	w       *bufio.Writer
	fl      http.Flusher
	partial []byte
}

func (s *sseLines) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p...)
			break
		}
		s.line(string(append(s.partial, p[:i]...)))
		s.partial = s.partial[:0]
		p = p[i+1:]
	}
	return n, s.flush()
}

func (s *sseLines) line(l string) {
	b, _ := json.Marshal(l)
	fmt.Fprintf(s.w, "event: line\ndata: %s\n\n", b)
}

// rest sends an unterminated last line.
func (s *sseLines) rest() {
	if len(s.partial) > 0 {
		s.line(string(s.partial))
		s.partial = nil
	}
}

func (s *sseLines) flush() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	s.fl.Flush()
	return nil
}

// asCaller is r's context, marked Restricted unless an admin asks: only an
// admin may widen an agent's sandbox.
func asCaller(r *http.Request) context.Context {
	if principal(r).Role >= security.Admin {
		return r.Context()
	}
	return supervisor.Restricted(r.Context())
}

// shown is rec as r's principal may see it: a viewer sees the names of
// the spec's environment variables, not their values.
func shown(r *http.Request, rec supervisor.Record) supervisor.Record {
	rec.Spec = shownSpec(r, rec.Spec)
	return rec
}

func shownSpec(r *http.Request, spec supervisor.Spec) supervisor.Spec {
	if principal(r).Role >= security.Operator || len(spec.Env) == 0 {
		return spec
	}
	env := make(map[string]string, len(spec.Env))
	for k := range spec.Env {
		env[k] = "(hidden)"
	}
	spec.Env = env
	return spec
}
