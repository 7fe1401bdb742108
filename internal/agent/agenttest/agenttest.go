// Package agenttest runs a local model server for tests: it speaks the
// real OpenAI chat-completions protocol (streamed, with tool calls) and the
// real Anthropic messages protocol, and answers from a script, so the real
// SDK clients run against it.
package agenttest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// ToolCall is a tool call in a scripted reply.
type ToolCall struct {
	ID   string
	Name string
	Args json.RawMessage
}

// Reply is one scripted model answer.
type Reply struct {
	Text  string
	Calls []ToolCall
	In    int64
	Out   int64
	// Status, when set, is an error answer with this HTTP status.
	Status     int
	RetryAfter string // Retry-After-Ms header of an error answer
	Message    string
	// Hang blocks until the request is cancelled.
	Hang bool
	// Delay is the model's latency before it answers.
	Delay time.Duration
}

// Server is a local server that speaks the real wire protocols: OpenAI
// chat completions (streamed, with tool calls) at /v1/chat/completions and
// Anthropic messages at /v1/messages. It answers from a script, one reply
// per request, and keeps the requests it got.
type Server struct {
	*httptest.Server
	key string
	// Lean skips keeping the requests (a model's own work, which a
	// benchmark of the kernel must not count).
	Lean bool

	mu       sync.Mutex
	script   []Reply
	requests []map[string]any
	headers  []http.Header
}

// New starts a server that accepts key and answers with script; the last
// reply repeats once the others are used.
func New(t testing.TB, key string, script ...Reply) *Server {
	f := Start(key, script...)
	t.Cleanup(f.Close)
	return f
}

// Start is New without a test: the caller closes the server.
func Start(key string, script ...Reply) *Server {
	f := &Server{key: key, script: script}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", f.openai)
	mux.HandleFunc("POST /v1/messages", f.anthropic)
	f.Server = httptest.NewServer(mux)
	return f
}

// next records the request and returns the reply for it.
func (f *Server) next(r *http.Request) (Reply, int) {
	var m map[string]any
	if f.Lean {
		io.Copy(io.Discard, r.Body)
		m = map[string]any{}
	} else {
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &m)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, m)
	f.headers = append(f.headers, nil)
	if !f.Lean {
		f.headers[len(f.headers)-1] = r.Header.Clone()
	}
	n := len(f.requests) - 1
	if len(f.script) == 0 {
		return Reply{Text: "(script exhausted)"}, n
	}
	rep := f.script[0]
	if len(f.script) > 1 {
		f.script = f.script[1:]
	}
	return rep, n
}

// Count is how many requests the server got.
func (f *Server) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// Request is request i's JSON body.
func (f *Server) Request(i int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[i]
}

func writeJSONError(w http.ResponseWriter, rep Reply, body string) {
	if rep.RetryAfter != "" {
		w.Header().Set("Retry-After-Ms", rep.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.Status)
	io.WriteString(w, body)
}

// wait plays the reply's latency (or hangs); false when the client left.
func (rep Reply) wait(r *http.Request) bool {
	if rep.Hang {
		<-r.Context().Done()
		return false
	}
	if rep.Delay > 0 {
		select {
		case <-time.After(rep.Delay):
		case <-r.Context().Done():
			return false
		}
	}
	return true
}

func (f *Server) openai(w http.ResponseWriter, r *http.Request) {
	rep, _ := f.next(r)
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		rep = Reply{Status: 401, Message: "Incorrect API key provided: sk-wr***ng."}
	}
	if !rep.wait(r) {
		return
	}
	if rep.Status != 0 {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": rep.Message, "type": "invalid_request_error", "code": nil}})
		writeJSONError(w, rep, string(b))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	chunk := func(delta map[string]any, finish any, usage any) {
		choices := []any{}
		if delta != nil || finish != nil {
			if delta == nil {
				delta = map[string]any{}
			}
			choices = append(choices, map[string]any{"index": 0, "delta": delta, "finish_reason": finish})
		}
		b, _ := json.Marshal(map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
			"model": "m", "choices": choices, "usage": usage})
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
	chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil)
	// Text in small pieces, as a model streams it (a long text in larger
	// ones, or the client's decoding of millions of chunks is the test).
	piece := 4
	if len(rep.Text) > 64<<10 {
		piece = 16 << 10
	}
	for len(rep.Text) > 0 {
		n := min(len(rep.Text), piece)
		chunk(map[string]any{"content": rep.Text[:n]}, nil, nil)
		rep.Text = rep.Text[n:]
	}
	// Each tool call split across chunks: id and name first, then the
	// arguments in two fragments.
	for i, c := range rep.Calls {
		chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": c.ID, "type": "function",
			"function": map[string]any{"name": c.Name, "arguments": ""}}}}, nil, nil)
		half := len(c.Args) / 2
		for _, part := range []string{string(c.Args[:half]), string(c.Args[half:])} {
			chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": part}}}}, nil, nil)
		}
	}
	finish := "stop"
	if len(rep.Calls) > 0 {
		finish = "tool_calls"
	}
	chunk(nil, finish, nil)
	chunk(nil, nil, map[string]any{"prompt_tokens": rep.In, "completion_tokens": rep.Out, "total_tokens": rep.In + rep.Out})
	io.WriteString(w, "data: [DONE]\n\n")
	fl.Flush()
}

func (f *Server) anthropic(w http.ResponseWriter, r *http.Request) {
	rep, n := f.next(r)
	if r.Header.Get("Authorization") != "Bearer "+f.key && r.Header.Get("X-Api-Key") != f.key {
		rep = Reply{Status: 401, Message: "invalid x-api-key"}
	}
	if !rep.wait(r) {
		return
	}
	if rep.Status != 0 {
		typ := map[int]string{401: "authentication_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}[rep.Status]
		b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": rep.Message}, "request_id": "req_1"})
		writeJSONError(w, rep, string(b))
		return
	}
	content := []any{}
	if rep.Text != "" {
		content = append(content, map[string]any{"type": "text", "text": rep.Text})
	}
	for _, c := range rep.Calls {
		content = append(content, map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": json.RawMessage(c.Args)})
	}
	stop := "end_turn"
	if len(rep.Calls) > 0 {
		stop = "tool_use"
	}
	model, _ := f.Request(n)["model"].(string)
	b, _ := json.Marshal(map[string]any{"id": "msg_1", "type": "message", "role": "assistant", "model": model,
		"content": content, "stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": rep.In, "output_tokens": rep.Out}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", "req_1")
	w.Write(b)
}

// Call is a tool call with args marshalled to JSON.
func Call(id, name string, args any) ToolCall {
	b, _ := json.Marshal(args)
	return ToolCall{ID: id, Name: name, Args: b}
}

// MessagesJSON returns the messages of request i as JSON.
func (f *Server) MessagesJSON(i int) string {
	b, _ := json.Marshal(f.Request(i)["messages"])
	return string(b)
}

// Header returns the headers of request i.
func (f *Server) Header(i int) http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers[i]
}

// SetScript replaces the replies still to come.
func (f *Server) SetScript(script ...Reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = script
}
