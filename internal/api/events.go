package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/metrics"
)

// publishRequest is the body of POST /api/v1/events.
type publishRequest struct {
	Type    string          `json:"type"`
	AgentID string          `json:"agent_id"`
	Data    json.RawMessage `json:"data"`
}

// eventPublish serves POST /api/v1/events: one event as an object, or up
// to bus.MaxBatch as an array (stored in order, all or none validated).
func (s *Server) eventPublish(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "the body is over the 1 MiB limit", "")
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read the body: "+err.Error(), "")
		return
	}
	trimmed := bytes.TrimSpace(body)
	batch := len(trimmed) > 0 && trimmed[0] == '['
	var reqs []publishRequest
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if batch {
		err = dec.Decode(&reqs)
	} else {
		reqs = make([]publishRequest, 1)
		err = dec.Decode(&reqs[0])
	}
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON value")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "the body must be a JSON object {\"type\": \"custom.<name>\", \"agent_id\": \"...\", \"data\": {...}} or an array of them: "+err.Error(), "")
		return
	}
	evs := make([]bus.Event, len(reqs))
	for i, req := range reqs {
		if !strings.HasPrefix(req.Type, "custom.") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("only custom.* events can be published through the API (got %q)", req.Type), "type")
			return
		}
		if d := bytes.TrimSpace(req.Data); len(d) > 0 && d[0] != '{' && string(d) != "null" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("data: must be a JSON object (got %.40s)", d), "data")
			return
		}
		evs[i] = bus.Event{Type: req.Type, AgentID: req.AgentID, Data: req.Data}
	}
	if len(evs) == 0 {
		writeError(w, http.StatusBadRequest, "the array holds no events", "")
		return
	}
	out, err := svc.Bus.PublishBatch(r.Context(), evs)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if batch {
		writeJSON(w, http.StatusCreated, out)
		return
	}
	writeJSON(w, http.StatusCreated, out[0])
}

// eventStream serves GET /api/v1/events as Server-Sent Events. Each event's
// SSE id is its sequence, so a client that reconnects with Last-Event-ID

// eventQuery reads an event stream's filter (type, agent) and where it
// starts and ends (since or Last-Event-ID, follow), or answers 400.
func (s *Server) eventQuery(w http.ResponseWriter, r *http.Request) (bus.Filter, bus.SubscribeOptions, bool) {
	q := r.URL.Query()
	var f bus.Filter
	var opts bus.SubscribeOptions
	for _, t := range q["type"] {
		for _, p := range strings.Split(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				f.Types = append(f.Types, p)
			}
		}
	}
	f.Agent = q.Get("agent")
	if err := bus.ValidateFilter(f); err != nil {
		s.fail(w, r, err)
		return f, opts, false
	}
	since, hasSince, ok := seqParam(w, q.Get("since"), "since")
	if !ok {
		return f, opts, false
	}
	// Last-Event-ID (a reconnecting EventSource) wins over ?since.
	if last, has, ok := seqParam(w, r.Header.Get("Last-Event-ID"), "Last-Event-ID"); !ok {
		return f, opts, false
	} else if has {
		since, hasSince = last, true
	}
	switch v := q.Get("follow"); v {
	case "", "true", "1":
		// Without a start, only what happens from now on.
		opts = bus.SubscribeOptions{After: since, FromNow: !hasSince}
	case "false", "0":
		// The stored events (after since, or all), then the end.
		opts = bus.SubscribeOptions{After: since, UntilCaughtUp: true}
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("follow must be true or false (got %q)", v), "follow")
		return f, opts, false
	}
	return f, opts, true
}

// (or ?since=SEQ) gets exactly the events after it.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "type", "agent", "since", "follow") {
		return
	}
	f, opts, ok := s.eventQuery(w, r)
	if !ok {
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported on this connection", "")
		return
	}
	sub, err := svc.Bus.Subscribe(r.Context(), f, opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer sub.Close()
	metrics.SSEClients.Inc()
	defer metrics.SSEClients.Dec()
	keepOpen(w)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	// An id with no data sets the client's Last-Event-ID without an event,
	// so a client that reconnects before any event resumes exactly here.
	fmt.Fprintf(bw, ": oxios event stream\nid: %d\n\n", sub.After)
	flush := func() bool {
		if bw.Flush() != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !flush() {
		return
	}
	hb := time.NewTicker(s.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				// Tell the client when the stream ended on a failure, so it
				// does not take a partial answer for the whole.
				if err := sub.Err(); err != nil {
					id := requestID()
					s.Logger.Warn("event stream ended", "request_id", id, "err", err)
					msg, _ := json.Marshal(map[string]string{"message": "the event stream failed; the daemon's log has it under request_id " + id})
					fmt.Fprintf(bw, "event: error\ndata: %s\n\n", msg)
				}
				flush()
				return
			}
			data, _ := json.Marshal(ev)
			if ev.Type == bus.GapType {
				// Not an event of the log: no id, so resuming is unaffected.
				fmt.Fprintf(bw, "event: %s\ndata: %s\n\n", ev.Type, data)
			} else {
				fmt.Fprintf(bw, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, data)
			}
			// Batch writes while more events are waiting; flush when idle.
			if len(sub.C) == 0 && !flush() {
				return
			}
		case <-hb.C:
			fmt.Fprint(bw, ": heartbeat\n\n")
			if !flush() {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.stopping:
			flush()
			return
		}
	}
}

// seqParam parses an optional event sequence number; on a malformed one it
// answers 400 naming field and returns ok false.
func seqParam(w http.ResponseWriter, v, field string) (seq uint64, present, ok bool) {
	if v == "" {
		return 0, false, true
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s must be an event sequence number (got %q)", field, v), field)
		return 0, false, false
	}
	return seq, true, true
}
