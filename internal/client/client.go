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

	"github.com/oxios/oxios/internal/oxios"
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
	oxios.ErrorDetail
}

// Error returns the API's message, which names the field at fault.
func (e *Error) Error() string { return e.Message }

// System returns the daemon's description.
func (c *Client) System(ctx context.Context) (oxios.System, error) {
	var s oxios.System
	err := c.do(ctx, http.MethodGet, "/api/v1/system", nil, &s)
	return s, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doWith(ctx, c.http, method, path, in, out)
}

// doLong is do without the client's timeout, for calls that wait on the
// daemon (wait, kill); ctx bounds them.
func (c *Client) doLong(ctx context.Context, method, path string, in, out any) error {
	hc := *c.http
	hc.Timeout = 0
	return c.doWith(ctx, &hc, method, path, in, out)
}

func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body io.Reader
	h := http.Header{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
		h.Set("Content-Type", "application/json")
	}
	resp, err := c.rawWith(ctx, hc, method, path, body, h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, err)
	}
	return nil
}

// raw sends a request and returns the response if its status is below 400;
// otherwise it returns the decoded *Error.
func (c *Client) raw(ctx context.Context, method, path string, body io.Reader, h http.Header) (*http.Response, error) {
	return c.rawWith(ctx, c.http, method, path, body, h)
}

func (c *Client) rawWith(ctx context.Context, hc *http.Client, method, path string, body io.Reader, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the daemon at %s (is it running? try: oxios status): %w", c.baseURL, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp, path)
	}
	return resp, nil
}

func decodeError(resp *http.Response, path string) error {
	var env oxios.ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &env) != nil || env.Error.Message == "" {
		return &Error{Status: resp.StatusCode, ErrorDetail: oxios.ErrorDetail{Code: "http_error", Message: fmt.Sprintf("HTTP %d from %s", resp.StatusCode, path)}}
	}
	return &Error{Status: resp.StatusCode, ErrorDetail: env.Error}
}
