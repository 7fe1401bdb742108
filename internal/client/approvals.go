package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/oxios/oxios/internal/oxios"
)

// Approvals lists approvals (state "" for all).
func (c *Client) Approvals(ctx context.Context, state, agent string) ([]oxios.Approval, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if agent != "" {
		q.Set("agent", agent)
	}
	path := "/api/v1/approvals"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Items []oxios.Approval `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Items, err
}

// Decide approves or rejects a pending approval.
func (c *Client) Decide(ctx context.Context, id string, approve bool, reason string) (oxios.Approval, error) {
	verb := "/reject"
	if approve {
		verb = "/approve"
	}
	var a oxios.Approval
	err := c.do(ctx, http.MethodPost, "/api/v1/approvals/"+url.PathEscape(id)+verb, map[string]string{"reason": reason}, &a)
	return a, err
}
