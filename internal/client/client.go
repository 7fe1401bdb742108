// Package client is the Go client of the oxios REST API, used by the CLI
// and by tests.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/api"
)

// Client talks to one oxios daemon.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
}

// New returns a client for the daemon at baseURL ("http://127.0.0.1:4200")
// that authenticates with token.
func New(baseURL, token string) *Client {
	return &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		token:   token,
		http:    &http.Client{Timeout: 30 * time.Second},
	}
}

// BaseURL is the daemon address the client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// Error is an error answer from the API, decoded from its envelope.
type Error struct {
	Status int
	api.ErrorDetail
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// System returns the daemon's description.
func (c *Client) System(ctx context.Context) (api.System, error) {
	var s api.System
	err := c.do(ctx, http.MethodGet, "/api/v1/system", nil, &s)
	return s, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the daemon at %s (is it running? try: oxios status): %w", c.baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var env api.ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &env) != nil || env.Error.Message == "" {
			return &Error{Status: resp.StatusCode, ErrorDetail: api.ErrorDetail{Code: "http_error", Message: fmt.Sprintf("HTTP %d from %s", resp.StatusCode, path)}}
		}
		return &Error{Status: resp.StatusCode, ErrorDetail: env.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, err)
	}
	return nil
}
