package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/oxios/oxios/internal/oxios"
)

// EventsOptions select events to stream.
type EventsOptions struct {
	Types []string
	Agent string
	// Since, when set, starts after this sequence; otherwise only new
	// events are sent.
	Since *uint64
	// Follow keeps the stream open for new events; without it the stream
	// ends once the stored events have been sent.
	Follow bool
}

// Events streams events to fn until the stream ends, ctx is done, or fn
// returns an error. It returns the sequence of the last event seen, so a
// caller can resume from it.
func (c *Client) Events(ctx context.Context, o EventsOptions, fn func(oxios.Event) error) (last uint64, err error) {
	q := url.Values{}
	if len(o.Types) > 0 {
		q.Set("type", strings.Join(o.Types, ","))
	}
	if o.Agent != "" {
		q.Set("agent", o.Agent)
	}
	if o.Since != nil {
		q.Set("since", strconv.FormatUint(*o.Since, 10))
	}
	if !o.Follow {
		q.Set("follow", "false")
	}
	path := "/api/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	hc := *c.http
	hc.Timeout = 0 // a stream lasts as long as it lasts
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the daemon at %s (is it running? try: oxios status): %w", c.baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return 0, decodeError(resp, path)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data strings.Builder
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			name = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "id:"):
			// Also sent alone, as the position the stream starts after.
			if id, err := strconv.ParseUint(strings.TrimSpace(line[3:]), 10, 64); err == nil {
				last = id
			}
		case line == "":
			if data.Len() == 0 {
				name = ""
				continue
			}
			if name == "error" {
				var e struct{ Message string }
				json.Unmarshal([]byte(data.String()), &e)
				return last, fmt.Errorf("the event stream failed: %s", e.Message)
			}
			name = ""
			var ev oxios.Event
			if err := json.Unmarshal([]byte(data.String()), &ev); err != nil {
				return last, fmt.Errorf("bad event from the daemon: %w", err)
			}
			data.Reset()
			if err := fn(ev); err != nil {
				return last, err
			}
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if ctx.Err() != nil {
		return last, nil
	}
	return last, sc.Err()
}
