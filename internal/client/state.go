package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"
)

// StateGet returns a document and its revision.
func (c *Client) StateGet(ctx context.Context, ns, key string) (oxios.Entry, error) {
	resp, err := c.raw(ctx, http.MethodGet, statePath(ns, key), nil, nil)
	if err != nil {
		return oxios.Entry{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return oxios.Entry{}, err
	}
	rev, _ := strconv.ParseUint(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
	updated, _ := time.Parse(time.RFC3339Nano, resp.Header.Get("X-Oxios-Updated"))
	return oxios.Entry{Namespace: ns, Key: key, Value: b, Revision: rev, Updated: updated}, nil
}

// PutOptions make a put conditional.
type PutOptions struct {
	// IfRevision > 0 writes only if the current revision is this one.
	IfRevision uint64
	// Create writes only if the document does not exist.
	Create bool
}

// StatePut writes a JSON document and returns its new revision.
func (c *Client) StatePut(ctx context.Context, ns, key string, value []byte, o PutOptions) (uint64, error) {
	h := http.Header{"Content-Type": {"application/json"}}
	if o.IfRevision > 0 {
		h.Set("If-Match", strconv.Quote(strconv.FormatUint(o.IfRevision, 10)))
	}
	if o.Create {
		h.Set("If-None-Match", "*")
	}
	resp, err := c.raw(ctx, http.MethodPut, statePath(ns, key), bytes.NewReader(value), h)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var res struct {
		Revision uint64 `json:"revision"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return 0, fmt.Errorf("decode put response: %w", err)
	}
	return res.Revision, nil
}

// StateDelete deletes a document; ifRev > 0 makes it conditional.
func (c *Client) StateDelete(ctx context.Context, ns, key string, ifRev uint64) error {
	h := http.Header{}
	if ifRev > 0 {
		h.Set("If-Match", strconv.Quote(strconv.FormatUint(ifRev, 10)))
	}
	resp, err := c.raw(ctx, http.MethodDelete, statePath(ns, key), nil, h)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// StateList returns one page of documents in ns under prefix.
func (c *Client) StateList(ctx context.Context, ns, prefix string, limit int, cursor string) ([]oxios.Entry, string, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	path := "/api/v1/state/" + url.PathEscape(ns)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var res struct {
		Items      []oxios.Entry `json:"items"`
		NextCursor string        `json:"next_cursor"`
	}
	err := c.do(ctx, http.MethodGet, path, nil, &res)
	return res.Items, res.NextCursor, err
}

func statePath(ns, key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/api/v1/state/" + url.PathEscape(ns) + "/" + strings.Join(parts, "/")
}
