package client

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

// LoginLink is a one-time login URL for the dashboard.
type LoginLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateLoginLink asks for a one-time login link for this client's token.
func (c *Client) CreateLoginLink(ctx context.Context) (LoginLink, error) {
	var out LoginLink
	err := c.do(ctx, http.MethodPost, "/api/v1/login-links", nil, &out)
	return out, err
}

// Reload has the daemon read its config file again and apply what it can.
func (c *Client) Reload(ctx context.Context) (oxios.ReloadResult, error) {
	var out oxios.ReloadResult
	err := c.do(ctx, http.MethodPost, "/api/v1/reload", nil, &out)
	return out, err
}

// Probe GETs an unauthenticated path (/healthz, /readyz) and returns its
// status and body, whatever the status.
func (c *Client) Probe(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), nil
}

// Backup streams an online backup of the daemon into w.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.rawWith(ctx, &http.Client{}, http.MethodGet, "/api/v1/backup", nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}
