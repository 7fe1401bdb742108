package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

// openAI speaks chat completions, streamed, with tools: OpenAI itself and
// the servers that copy its API (Ollama, vLLM, LM Studio, OpenRouter).
type openAI struct {
	name   string
	client openai.Client

	mu      sync.Mutex
	schemas map[string]openai.FunctionParameters
}

// parameters returns a tool's JSON schema with its values encoded once:
// the SDK encodes nested maps by reflection at every request, which for
// the built-in tools cost a third of a model call.
func (p *openAI) parameters(t ToolDef) openai.FunctionParameters {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fp, ok := p.schemas[t.Name]; ok {
		return fp
	}
	fp := openai.FunctionParameters{}
	for k, v := range t.Schema {
		b, err := json.Marshal(v)
		if err != nil {
			fp[k] = v
			continue
		}
		fp[k] = json.RawMessage(b)
	}
	if p.schemas == nil {
		p.schemas = map[string]openai.FunctionParameters{}
	}
	p.schemas[t.Name] = fp
	return fp
}

func newOpenAI(name string, c ProviderConfig, retries int) *openAI {
	opts := []option.RequestOption{
		option.WithAPIKey(c.APIKey),
		// 429 and 5xx are retried with backoff, honouring Retry-After.
		option.WithMaxRetries(retries),
		option.WithHTTPClient(&http.Client{}),
	}
	if c.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(c.BaseURL))
	}
	if name != "openai" { // OpenAI's own headers from the environment are not for other servers
		opts = append(opts, option.WithHeaderDel("OpenAI-Organization"), option.WithHeaderDel("OpenAI-Project"))
	}
	return &openAI{name: name, client: openai.NewClient(opts...)}
}

func (p *openAI) Complete(ctx context.Context, req Request, onText func(string)) (Response, error) {
	stream := p.client.Chat.Completions.NewStreaming(ctx, p.params(req))
	defer stream.Close()
	// The stream is gathered here rather than with the SDK's accumulator:
	// text and usage as they come, tool calls joined by index.
	var text strings.Builder
	var calls []ToolCall
	var resp Response
	choices := 0
	for stream.Next() {
		chunk := stream.Current()
		if chunk.JSON.Usage.Valid() {
			// The last usage seen is the total (servers that send running
			// totals on every chunk must not be added up).
			resp.TokensIn, resp.TokensOut = chunk.Usage.PromptTokens, chunk.Usage.CompletionTokens
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		choices++
		d := chunk.Choices[0].Delta
		if d.Content != "" {
			text.WriteString(d.Content)
			if onText != nil {
				onText(d.Content)
			}
		}
		for _, tc := range d.ToolCalls {
			i := int(tc.Index)
			if i < 0 || i > 127 {
				return Response{}, &ProviderError{Provider: p.name, Message: fmt.Sprintf("tool call index %d out of range", i)}
			}
			for len(calls) <= i {
				calls = append(calls, ToolCall{})
			}
			if tc.ID != "" {
				calls[i].ID = tc.ID
			}
			if tc.Function.Name != "" {
				calls[i].Name = tc.Function.Name
			}
			calls[i].Args = append(calls[i].Args, tc.Function.Arguments...)
		}
	}
	if err := stream.Err(); err != nil {
		return Response{}, p.wrap(ctx, err)
	}
	if choices == 0 {
		return Response{}, &ProviderError{Provider: p.name, Message: "the response has no choices"}
	}
	resp.Text = text.String()
	for _, c := range calls {
		if c.Name == "" {
			continue
		}
		if len(strings.TrimSpace(string(c.Args))) == 0 {
			c.Args = []byte("{}")
		}
		resp.ToolCalls = append(resp.ToolCalls, c)
	}
	return resp, nil
}

// params is req as a chat completion request: the system prompt, the
// conversation and the tools.
func (p *openAI) params(req Request) openai.ChatCompletionNewParams {
	params := openai.ChatCompletionNewParams{
		Model:         req.Model,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	if req.MaxTokens > 0 {
		params.MaxCompletionTokens = openai.Int(int64(req.MaxTokens))
	}
	if req.System != "" {
		params.Messages = append(params.Messages, openai.SystemMessage(req.System))
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "user":
			params.Messages = append(params.Messages, openai.UserMessage(m.Text))
		case "assistant":
			a := openai.ChatCompletionAssistantMessageParam{}
			if m.Text != "" {
				a.Content.OfString = openai.String(m.Text)
			}
			for _, tc := range m.ToolCalls {
				a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
						ID:       tc.ID,
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: tc.Name, Arguments: string(tc.Args)},
					},
				})
			}
			params.Messages = append(params.Messages, openai.ChatCompletionMessageParamUnion{OfAssistant: &a})
		case "tool":
			for _, r := range m.Results {
				params.Messages = append(params.Messages, openai.ToolMessage(r.Content, r.CallID))
			}
		}
	}
	for _, t := range req.Tools {
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name:        t.Name,
			Description: openai.String(t.Description),
			Parameters:  p.parameters(t),
		}))
	}
	return params
}

// wrap turns an SDK error into a ProviderError carrying the provider's own
// message (the SDK's Error() leaves it out).
func (p *openAI) wrap(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		msg := apiErr.Message
		if msg == "" {
			msg = http.StatusText(apiErr.StatusCode)
		}
		return &ProviderError{Provider: p.name, Status: apiErr.StatusCode, Message: msg}
	}
	var se *ssestream.StreamError
	if errors.As(err, &se) {
		return &ProviderError{Provider: p.name, Message: "error in the response stream: " + se.Error()}
	}
	return &ProviderError{Provider: p.name, Message: err.Error()}
}
