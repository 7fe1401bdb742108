package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/bus"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"
)

// Every error a handler meets becomes its status in one place (issue
// 16.2): the package's own kinds by what they mean, anything else a 500
// that says only where the log has it.
func TestFailMapsEveryKind(t *testing.T) {
	var log bytes.Buffer
	s := New(Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	for _, c := range []struct {
		err    error
		status int
		field  string
	}{
		{&bus.InvalidError{Field: "type", Msg: "bad"}, 400, "type"},
		{&store.InvalidError{Field: "key", Msg: "bad"}, 400, "key"},
		{&security.InvalidError{Field: "name", Msg: "bad"}, 400, "name"},
		{fmt.Errorf("spawn: %w", &supervisor.InvalidError{Field: "command", Msg: "bad"}), 400, "command"},
		{&supervisor.ForbiddenError{Field: "sandbox.mode", Msg: "admin only"}, 403, "sandbox.mode"},
		{&store.TooLargeError{Size: 2 << 20}, 413, "value"},
		{&supervisor.NotFoundError{What: "cron job x"}, 404, "name"},
		{fmt.Errorf("agent a: %w", supervisor.ErrNotFound), 404, "id"},
		{approval.ErrNotFound, 404, "id"},
		{security.ErrNoToken, 404, "id"},
		{inDoc(store.ErrNotFound, "app/k"), 404, ""},
		{store.ErrConflict, 412, "If-Match"},
		{store.ErrExists, 412, "If-None-Match"},
		{fmt.Errorf("agent a is queued: %w", supervisor.ErrConflict), 409, ""},
		{approval.ErrNotPending, 409, "id"},
		{security.ErrExists, 409, "name"},
		{supervisor.ErrClosed, 503, ""},
		{fmt.Errorf("backup: %w", oxios.ErrStarting), 503, ""},
	} {
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/api/v1/x", nil), c.err)
		var body ErrorBody
		if w.Code != c.status || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error.Field != c.field || body.Error.Message == "" {
			t.Errorf("%v: %d %s (want %d, field %q)", c.err, w.Code, w.Body, c.status, c.field)
		}
	}
	if log.Len() != 0 {
		t.Errorf("known kinds were logged as failures: %s", log.String())
	}

	// An unknown error: its text stays in the log, tied by a request id.
	w := httptest.NewRecorder()
	s.fail(w, httptest.NewRequest("GET", "/api/v1/x", nil), errors.New("read /var/lib/oxios/data/jetstream/x: input/output error"))
	var body ErrorBody
	json.Unmarshal(w.Body.Bytes(), &body)
	msg := body.Error.Message
	if w.Code != 500 || strings.Contains(msg, "/var/lib") || !strings.Contains(msg, "request_id ") {
		t.Fatalf("an unknown error: %d %q", w.Code, msg)
	}
	id := msg[strings.LastIndex(msg, " ")+1:]
	if !strings.Contains(log.String(), "request_id="+id) || !strings.Contains(log.String(), "/var/lib/oxios") {
		t.Fatalf("the log line: %s", log.String())
	}
}

// writeJSON encodes before it sends: a value JSON cannot hold is a 500
// envelope, not a 200 with half a body.
func TestWriteJSONChecksItsEncoding(t *testing.T) {
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, map[string]float64{"x": math.Inf(1)})
	var body ErrorBody
	if w.Code != 500 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error.Code != "internal" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
