package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/store"
)

// maxBody bounds request bodies: a 1 MiB value plus room for nothing else.
const maxBody = store.MaxValueSize

// checkQuery rejects query parameters the route does not know.
func checkQuery(w http.ResponseWriter, q url.Values, allowed ...string) bool {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", ")), k)
			return false
		}
	}
	return true
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// parseRevision reads an If-Match revision: a number, quoted or not.
func parseRevision(h string) (uint64, error) {
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(h), "W/"))
	v = strings.Trim(v, `"`)
	rev, err := strconv.ParseUint(v, 10, 64)
	if err != nil || rev == 0 {
		return 0, fmt.Errorf("If-Match must be a revision number such as \"42\" (got %q)", h)
	}
	return rev, nil
}

// ifMatch reads the optional If-Match revision; on a malformed header it
// answers 400 and returns false.
func ifMatch(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	h := r.Header.Get("If-Match")
	if h == "" {
		return 0, true
	}
	rev, err := parseRevision(h)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "If-Match")
		return 0, false
	}
	return rev, true
}

func (s *Server) stateGet(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	e, err := svc.State.Get(r.Context(), r.PathValue("ns"), r.PathValue("key"))
	if err != nil {
		s.fail(w, r, inDoc(err, r.PathValue("ns")+"/"+r.PathValue("key")))
		return
	}
	w.Header().Set("ETag", etag(e.Revision))
	w.Header().Set("Last-Modified", e.Updated.UTC().Format(http.TimeFormat))
	w.Header().Set("X-Oxios-Updated", e.Updated.UTC().Format(time.RFC3339Nano))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(e.Value)
}

// writeResult is the body of a successful PUT.
type writeResult struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Revision  uint64 `json:"revision"`
}

func (s *Server) statePut(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	ns, key := r.PathValue("ns"), r.PathValue("key")
	// Validate names before reading a body we may not need.
	if err := store.ValidateNamespace(ns); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := store.ValidateKey(key); err != nil {
		s.fail(w, r, err)
		return
	}
	ifRev, ok := ifMatch(w, r)
	if !ok {
		return
	}
	create := false
	if h := r.Header.Get("If-None-Match"); h != "" {
		if strings.TrimSpace(h) != "*" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("If-None-Match must be * (create only) (got %q)", h), "If-None-Match")
			return
		}
		if ifRev != 0 {
			writeError(w, http.StatusBadRequest, "send either If-Match or If-None-Match, not both", "If-None-Match")
			return
		}
		create = true
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the value is over the %d-byte (1 MiB) limit", store.MaxValueSize), "value")
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read the body: "+err.Error(), "")
		return
	}
	if len(body) == 0 {
		writeError(w, http.StatusBadRequest, "the body must be a JSON value", "value")
		return
	}
	var rev uint64
	switch {
	case create:
		rev, err = svc.State.Create(r.Context(), ns, key, body)
	case ifRev != 0:
		rev, err = svc.State.Update(r.Context(), ns, key, body, ifRev)
	default:
		rev, err = svc.State.Put(r.Context(), ns, key, body)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.publish(r, svc, "state.put", map[string]any{"namespace": ns, "key": key, "revision": rev})
	w.Header().Set("ETag", etag(rev))
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeJSON(w, status, writeResult{Namespace: ns, Key: key, Revision: rev})
}

func (s *Server) stateDelete(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	if svc == nil || !checkQuery(w, r.URL.Query()) {
		return
	}
	ns, key := r.PathValue("ns"), r.PathValue("key")
	ifRev, ok := ifMatch(w, r)
	if !ok {
		return
	}
	if err := svc.State.Delete(r.Context(), ns, key, ifRev); err != nil {
		s.fail(w, r, inDoc(err, ns+"/"+key))
		return
	}
	s.publish(r, svc, "state.deleted", map[string]any{"namespace": ns, "key": key})
	s.audit(r, audit.Entry{Action: "state.delete", Resource: "state/" + ns + "/" + key})
	w.WriteHeader(http.StatusNoContent)
}

// listResult is the body of a state list.
type listResult struct {
	Items      []store.Entry `json:"items"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

func (s *Server) stateList(w http.ResponseWriter, r *http.Request) {
	svc := s.svc(w)
	q := r.URL.Query()
	if svc == nil || !checkQuery(w, q, "prefix", "limit", "cursor") {
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to 1000 (got %q)", v), "limit")
			return
		}
		limit = n
	}
	items, next, err := svc.State.List(r.Context(), r.PathValue("ns"), q.Get("prefix"), limit, q.Get("cursor"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if items == nil {
		items = []store.Entry{}
	}
	writeJSON(w, http.StatusOK, listResult{Items: items, NextCursor: next})
}

// publish records a fact about a request on the bus. The write it
// describes has already happened, so a failure is logged, not returned.
func (s *Server) publish(r *http.Request, svc *Services, typ string, data any) {
	b, _ := json.Marshal(data)
	// The write is done: its event must not be lost because the client left.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), oxios.BackboneTimeout)
	defer cancel()
	if _, err := svc.Bus.Publish(ctx, bus.Event{Type: typ, Data: b}); err != nil {
		s.Logger.Error("publish event", "type", typ, "err", err)
	}
}
