package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/oxios/oxios/internal/oxios"
)

// AuditFilter selects audit entries; empty fields match all.
type AuditFilter struct {
	Actor, Action string
	// Since is an RFC 3339 time or a duration back from now ("24h").
	Since string
	After uint64
	Limit int
}

// Audit lists audit entries, oldest first; next continues the list (0: the end).
func (c *Client) Audit(ctx context.Context, f AuditFilter) (items []oxios.AuditEntry, next uint64, err error) {
	q := url.Values{}
	if f.Actor != "" {
		q.Set("actor", f.Actor)
	}
	if f.Action != "" {
		q.Set("action", f.Action)
	}
	if f.Since != "" {
		q.Set("since", f.Since)
	}
	if f.After > 0 {
		q.Set("after", strconv.FormatUint(f.After, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/api/v1/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Items     []oxios.AuditEntry `json:"items"`
		NextAfter uint64             `json:"next_after"`
	}
	err = c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Items, out.NextAfter, err
}

// AuditVerify checks the whole audit chain.
func (c *Client) AuditVerify(ctx context.Context) (oxios.AuditVerdict, error) {
	var v oxios.AuditVerdict
	err := c.doLong(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &v)
	return v, err
}
