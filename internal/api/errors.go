package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/approval"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/oxios"
	"github.com/oxios/oxios/internal/security"
	"github.com/oxios/oxios/internal/store"
	"github.com/oxios/oxios/internal/supervisor"
)

// The error envelope every /api/ error is sent in, defined in package oxios.
type (
	ErrorBody   = oxios.ErrorBody
	ErrorDetail = oxios.ErrorDetail
)

// codes maps a status to the envelope's machine-readable code.
var codes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusPreconditionFailed:    "precondition_failed",
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusInternalServerError:   "internal",
	http.StatusServiceUnavailable:    "unavailable",
}

func writeError(w http.ResponseWriter, status int, message, field string) {
	code, ok := codes[status]
	if !ok {
		code = "error"
	}
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message, Field: field}})
}

// writeJSON answers v as JSON. It is encoded before anything is sent, so
// that a value that cannot be is a 500 envelope, not half a body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		// The daemon's logger is the default one (kernel.newKernel).
		id := requestID()
		slog.Error("an answer could not be encoded as JSON", "request_id", id, "type", fmt.Sprintf("%T", v), "err", err)
		status, b = http.StatusInternalServerError, bytes.Buffer{}
		json.NewEncoder(&b).Encode(ErrorBody{Error: ErrorDetail{Code: codes[status], Message: "internal error; the daemon's log has it under request_id " + id}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// docError names the document a store error is about.
type docError struct {
	doc string
	err error
}

func (e *docError) Error() string { return e.doc + ": " + e.err.Error() }
func (e *docError) Unwrap() error { return e.err }

// inDoc wraps a store error with its document (ns/key), for its message.
func inDoc(err error, doc string) error { return &docError{doc: doc, err: err} }

// fail answers err: the one place where what went wrong becomes a status.
// Bad input names its field (400), then what does not exist (404), what
// the state does not allow (409, 412), what the caller may not (403), a
// daemon shutting down (503). Anything else is a 500 whose message says
// only where the daemon's log has it: an internal error's text (a path, a
// backbone's answer) is not the client's to read.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		inv *oxios.InvalidError
		fe  *supervisor.ForbiddenError
		big *store.TooLargeError
		nf  *supervisor.NotFoundError
		doc *docError
		ce  *config.Error
	)
	switch {
	case errors.As(err, &ce): // a reload's
		writeError(w, http.StatusBadRequest, "the config file is invalid; nothing was changed: "+ce.Error(), ce.Key)
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, inv.Error(), inv.Field)
	case errors.As(err, &fe):
		writeError(w, http.StatusForbidden, fe.Error(), fe.Field)
	case errors.As(err, &big):
		writeError(w, http.StatusRequestEntityTooLarge, big.Error(), "value")
	case errors.As(err, &nf):
		writeError(w, http.StatusNotFound, nf.Error(), "name")
	case errors.Is(err, store.ErrNotFound):
		if errors.As(err, &doc) {
			writeError(w, http.StatusNotFound, "no document "+doc.doc, "")
		} else {
			writeError(w, http.StatusNotFound, "no such document", "")
		}
	case errors.Is(err, supervisor.ErrNotFound), errors.Is(err, approval.ErrNotFound), errors.Is(err, security.ErrNoToken):
		writeError(w, http.StatusNotFound, err.Error(), "id")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusPreconditionFailed, "revision mismatch: the document has changed (If-Match)", "If-Match")
	case errors.Is(err, store.ErrExists):
		writeError(w, http.StatusPreconditionFailed, "the document already exists (If-None-Match: *)", "If-None-Match")
	case errors.Is(err, supervisor.ErrConflict):
		writeError(w, http.StatusConflict, strings.TrimSuffix(err.Error(), ": "+supervisor.ErrConflict.Error()), "")
	case errors.Is(err, approval.ErrNotPending):
		writeError(w, http.StatusConflict, err.Error(), "id")
	case errors.Is(err, security.ErrExists):
		writeError(w, http.StatusConflict, err.Error(), "name")
	case errors.Is(err, supervisor.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the daemon is shutting down", "")
	case errors.Is(err, oxios.ErrUnreachable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, strings.TrimSuffix(err.Error(), ": "+oxios.ErrUnreachable.Error()), "")
	case backboneBusy(err):
		// A stream electing a leader after a node of the cluster died, or a
		// cluster without a majority: not the request's fault, and not lasting.
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "the backbone did not answer in time (a node of the cluster may be down, or its streams electing leaders); try again", "")
	case errors.Is(err, oxios.ErrStarting):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, oxios.ErrStarting.Error(), "")
	default:
		id := requestID()
		s.Logger.Error("request failed", "request_id", id, "method", r.Method, "path", clip(r.URL.Path, maxAuditedResource), "err", err)
		writeError(w, http.StatusInternalServerError, "internal error; the daemon's log has it under request_id "+id, "")
	}
}

// requestID is a short random id that ties a 500 to its log line.
func requestID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// backboneBusy reports an error of a backbone that cannot answer now.
func backboneBusy(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Code == http.StatusServiceUnavailable {
		return true
	}
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
