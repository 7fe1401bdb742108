package client

import (
	"bufio"
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

func agentPath(id string, rest string) string {
	return "/api/v1/agents/" + url.PathEscape(id) + rest
}

// Spawn creates an agent from spec and returns its record at once.
func (c *Client) Spawn(ctx context.Context, spec oxios.Spec) (oxios.Record, error) {
	var r oxios.Record
	err := c.do(ctx, http.MethodPost, "/api/v1/agents", spec, &r)
	return r, err
}

// AgentFilter selects agents to list; empty fields match all.
type AgentFilter struct {
	States []string
	Kind   string
	Name   string
	Node   string
	Labels []string // key=value
	Limit  int
	Cursor string
}

// Agents lists agents, newest first; next is the cursor of the next page.
func (c *Client) Agents(ctx context.Context, f AgentFilter) (items []oxios.Record, next string, err error) {
	q := url.Values{}
	if len(f.States) > 0 {
		q.Set("state", strings.Join(f.States, ","))
	}
	if f.Kind != "" {
		q.Set("kind", f.Kind)
	}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.Node != "" {
		q.Set("node", f.Node)
	}
	for _, l := range f.Labels {
		q.Add("label", l)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Cursor != "" {
		q.Set("cursor", f.Cursor)
	}
	path := "/api/v1/agents"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Items      []oxios.Record `json:"items"`
		NextCursor string         `json:"next_cursor"`
	}
	err = c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Items, out.NextCursor, err
}

// Agent returns one agent's record.
func (c *Client) Agent(ctx context.Context, id string) (oxios.Record, error) {
	var r oxios.Record
	err := c.do(ctx, http.MethodGet, agentPath(id, ""), nil, &r)
	return r, err
}

// Wait waits up to timeout (at most 10m per call) for the agent's run to
// end and returns its record; its state says whether it ended.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) (oxios.Record, error) {
	var r oxios.Record
	err := c.doLong(ctx, http.MethodPost, agentPath(id, "/wait?timeout="+timeout.String()), nil, &r)
	return r, err
}

// Kill stops the agent (grace < 0: its spec's stop_timeout) and returns
// its record once it has ended.
func (c *Client) Kill(ctx context.Context, id string, grace time.Duration) (oxios.Record, error) {
	path := agentPath(id, "/kill")
	if grace >= 0 {
		path += "?grace=" + grace.String()
	}
	var r oxios.Record
	err := c.doLong(ctx, http.MethodPost, path, nil, &r)
	return r, err
}

// Restart restarts the agent.
func (c *Client) Restart(ctx context.Context, id string) (oxios.Record, error) {
	var r oxios.Record
	err := c.do(ctx, http.MethodPost, agentPath(id, "/restart"), nil, &r)
	return r, err
}

// DeleteAgent deletes an ended agent.
func (c *Client) DeleteAgent(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, agentPath(id, ""), nil, nil)
}

// Scheduler returns the scheduler's limits, running counts and queue.
func (c *Client) Scheduler(ctx context.Context) (oxios.SchedulerSnapshot, error) {
	var s oxios.SchedulerSnapshot
	err := c.do(ctx, http.MethodGet, "/api/v1/scheduler", nil, &s)
	return s, err
}

// AgentOutput copies the whole output of an llm agent into w (its record
// holds the start of it).
func (c *Client) AgentOutput(ctx context.Context, id string, w io.Writer) (int64, error) {
	hc := *c.http
	hc.Timeout = 0 // ctx bounds it: an output may be large
	resp, err := c.rawWith(ctx, &hc, http.MethodGet, agentPath(id, "/output"), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// AgentLogs returns the last n lines of the agent's log.
func (c *Client) AgentLogs(ctx context.Context, id string, n int) ([]string, error) {
	var out oxios.LogLines
	err := c.do(ctx, http.MethodGet, agentPath(id, "/logs?lines="+strconv.Itoa(n)), nil, &out)
	return out.Lines, err
}

// FollowAgentLogs calls fn with the last n lines of the agent's log, then
// with each new line, until the agent has ended and its output is drained,
// ctx is done, or fn fails.
func (c *Client) FollowAgentLogs(ctx context.Context, id string, n int, fn func(line string) error) error {
	path := agentPath(id, "/logs?follow=1&lines="+strconv.Itoa(n))
	hc := *c.http
	hc.Timeout = 0
	resp, err := c.rawWith(ctx, &hc, http.MethodGet, path, nil, http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "line":
			var l string
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &l); err != nil {
				return fmt.Errorf("bad log line from the daemon: %w", err)
			}
			if err := fn(l); err != nil {
				return err
			}
		case strings.HasPrefix(line, "data: ") && event == "end":
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the log stream ended early (did the daemon stop?)")
}
