package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// anthropicProvider speaks Anthropic's messages API with tools.
type anthropicProvider struct {
	client anthropic.Client
}

func newAnthropic(c ProviderConfig, retries int) *anthropicProvider {
	base := c.BaseURL
	if base == "" {
		base = "https://api.anthropic.com/"
	}
	return &anthropicProvider{client: anthropic.NewClient(
		// The key and URL are resolved by oxios (config, then
		// ANTHROPIC_API_KEY); no profile files or other variables.
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(base),
		option.WithAPIKey(c.APIKey),
		option.WithMaxRetries(retries), // 429, 5xx and 529, honouring Retry-After
		option.WithHTTPClient(&http.Client{}),
	)}
}

func (p *anthropicProvider) Complete(ctx context.Context, req Request, onText func(string)) (Response, error) {
	params := anthropic.MessageNewParams{Model: anthropic.Model(req.Model), MaxTokens: int64(req.MaxTokens)}
	if params.MaxTokens == 0 {
		params.MaxTokens = 8192
	}
	if req.System != "" {
		params.System = []anthropic.TextBlockParam{{Text: req.System}}
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "user":
			params.Messages = append(params.Messages, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Text)))
		case "assistant":
			var blocks []anthropic.ContentBlockParamUnion
			if m.Text != "" {
				blocks = append(blocks, anthropic.NewTextBlock(m.Text))
			}
			for _, tc := range m.ToolCalls {
				blocks = append(blocks, anthropic.NewToolUseBlock(tc.ID, json.RawMessage(tc.Args), tc.Name))
			}
			params.Messages = append(params.Messages, anthropic.NewAssistantMessage(blocks...))
		case "tool":
			var blocks []anthropic.ContentBlockParamUnion
			for _, r := range m.Results {
				blocks = append(blocks, anthropic.NewToolResultBlock(r.CallID, r.Content, r.IsError))
			}
			params.Messages = append(params.Messages, anthropic.NewUserMessage(blocks...))
		}
	}
	for _, t := range req.Tools {
		schema := anthropic.ToolInputSchemaParam{Properties: t.Schema["properties"], ExtraFields: map[string]any{}}
		if r, ok := t.Schema["required"].([]string); ok {
			schema.Required = r
		}
		for k, v := range t.Schema {
			if k != "properties" && k != "required" && k != "type" {
				schema.ExtraFields[k] = v
			}
		}
		params.Tools = append(params.Tools, anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
			Name: t.Name, Description: anthropic.String(t.Description), InputSchema: schema,
		}})
	}
	msg, err := p.client.Messages.New(ctx, params)
	if err != nil {
		if ctx.Err() != nil {
			return Response{}, ctx.Err()
		}
		var apiErr *anthropic.Error
		if errors.As(err, &apiErr) {
			m := apiErr.Message
			if m == "" {
				m = http.StatusText(apiErr.StatusCode)
			}
			return Response{}, &ProviderError{Provider: "anthropic", Status: apiErr.StatusCode, Message: m}
		}
		return Response{}, &ProviderError{Provider: "anthropic", Message: err.Error()}
	}
	resp := Response{TokensIn: msg.Usage.InputTokens, TokensOut: msg.Usage.OutputTokens}
	var text []string
	for _, b := range msg.Content {
		switch b.Type {
		case "text":
			text = append(text, b.Text)
		case "tool_use":
			args := json.RawMessage(b.Input)
			if len(args) == 0 {
				args = json.RawMessage("{}")
			}
			resp.ToolCalls = append(resp.ToolCalls, ToolCall{ID: b.ID, Name: b.Name, Args: args})
		}
	}
	resp.Text = strings.Join(text, "")
	if onText != nil && resp.Text != "" {
		onText(resp.Text)
	}
	return resp, nil
}
