package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// reply is one scripted model answer.
type reply struct {
	text  string
	calls []ToolCall
	in    int64
	out   int64
	// status, when set, is an error answer with this HTTP status.
	status     int
	retryAfter string // Retry-After-Ms header of an error answer
	message    string
	// hang blocks until the request is cancelled.
	hang bool
}

// fakeLLM is a local server that speaks the real wire protocols: OpenAI
// chat completions (streamed, with tool calls) at /v1/chat/completions and
// Anthropic messages at /v1/messages. It answers from a script, one reply
// per request, and keeps the requests it got.
type fakeLLM struct {
	*httptest.Server
	key string

	mu       sync.Mutex
	script   []reply
	requests []map[string]any
	headers  []http.Header
}

func newFakeLLM(t *testing.T, key string, script ...reply) *fakeLLM {
	f := &fakeLLM{key: key, script: script}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", f.openai)
	mux.HandleFunc("POST /v1/messages", f.anthropic)
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// next records the request and returns the reply for it.
func (f *fakeLLM) next(r *http.Request) (reply, int) {
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	json.Unmarshal(body, &m)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, m)
	f.headers = append(f.headers, r.Header.Clone())
	n := len(f.requests) - 1
	if len(f.script) == 0 {
		return reply{text: "(script exhausted)"}, n
	}
	rep := f.script[0]
	if len(f.script) > 1 {
		f.script = f.script[1:]
	}
	return rep, n
}

func (f *fakeLLM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeLLM) request(i int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[i]
}

func writeJSONError(w http.ResponseWriter, rep reply, body string) {
	if rep.retryAfter != "" {
		w.Header().Set("Retry-After-Ms", rep.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	io.WriteString(w, body)
}

func (f *fakeLLM) openai(w http.ResponseWriter, r *http.Request) {
	rep, _ := f.next(r)
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		rep = reply{status: 401, message: "Incorrect API key provided: sk-wr***ng."}
	}
	if rep.hang {
		<-r.Context().Done()
		return
	}
	if rep.status != 0 {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": rep.message, "type": "invalid_request_error", "code": nil}})
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
	// Text in small pieces, as a model streams it.
	for len(rep.text) > 0 {
		n := min(len(rep.text), 4)
		chunk(map[string]any{"content": rep.text[:n]}, nil, nil)
		rep.text = rep.text[n:]
	}
	// Each tool call split across chunks: id and name first, then the
	// arguments in two fragments.
	for i, c := range rep.calls {
		chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": c.ID, "type": "function",
			"function": map[string]any{"name": c.Name, "arguments": ""}}}}, nil, nil)
		half := len(c.Args) / 2
		for _, part := range []string{string(c.Args[:half]), string(c.Args[half:])} {
			chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": part}}}}, nil, nil)
		}
	}
	finish := "stop"
	if len(rep.calls) > 0 {
		finish = "tool_calls"
	}
	chunk(nil, finish, nil)
	chunk(nil, nil, map[string]any{"prompt_tokens": rep.in, "completion_tokens": rep.out, "total_tokens": rep.in + rep.out})
	io.WriteString(w, "data: [DONE]\n\n")
	fl.Flush()
}

func (f *fakeLLM) anthropic(w http.ResponseWriter, r *http.Request) {
	rep, n := f.next(r)
	if r.Header.Get("Authorization") != "Bearer "+f.key && r.Header.Get("X-Api-Key") != f.key {
		rep = reply{status: 401, message: "invalid x-api-key"}
	}
	if rep.hang {
		<-r.Context().Done()
		return
	}
	if rep.status != 0 {
		typ := map[int]string{401: "authentication_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}[rep.status]
		b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": rep.message}, "request_id": "req_1"})
		writeJSONError(w, rep, string(b))
		return
	}
	content := []any{}
	if rep.text != "" {
		content = append(content, map[string]any{"type": "text", "text": rep.text})
	}
	for _, c := range rep.calls {
		content = append(content, map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": json.RawMessage(c.Args)})
	}
	stop := "end_turn"
	if len(rep.calls) > 0 {
		stop = "tool_use"
	}
	model, _ := f.request(n)["model"].(string)
	b, _ := json.Marshal(map[string]any{"id": "msg_1", "type": "message", "role": "assistant", "model": model,
		"content": content, "stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": rep.in, "output_tokens": rep.out}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", "req_1")
	w.Write(b)
}

func call(id, name string, args any) ToolCall {
	b, _ := json.Marshal(args)
	return ToolCall{ID: id, Name: name, Args: b}
}

// lastMessages returns the messages of request i as JSON, for assertions.
func (f *fakeLLM) messagesJSON(i int) string {
	b, _ := json.Marshal(f.request(i)["messages"])
	return string(b)
}
