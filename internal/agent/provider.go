// Package agent is the language-model runtime: providers behind one small
// interface (OpenAI chat completions, Anthropic messages, Ollama), the tool
// loop that works a goal to a final answer, prices, retries and a circuit
// breaker per provider.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Message is one turn of a conversation.
type Message struct {
	// Role is user, assistant or tool.
	Role string
	Text string
	// ToolCalls are the calls an assistant turn asks for.
	ToolCalls []ToolCall
	// Results answer the calls of the previous assistant turn (role tool).
	Results []ToolResult
}

// ToolCall is a model's request to run a tool.
type ToolCall struct {
	ID   string
	Name string
	Args json.RawMessage
}

// ToolResult is what a tool call returned.
type ToolResult struct {
	CallID  string
	Name    string
	Content string
	IsError bool
}

// ToolDef describes a tool to the model.
type ToolDef struct {
	Name        string
	Description string
	Schema      map[string]any
}

// Request is one model call.
type Request struct {
	Model     string // without the provider prefix
	System    string
	Messages  []Message
	Tools     []ToolDef
	MaxTokens int
}

// Response is a model's answer: text, tool calls, or both.
type Response struct {
	Text      string
	ToolCalls []ToolCall
	TokensIn  int64
	TokensOut int64
}

// Provider calls one model API. OnText, if set, receives streamed text as
// it arrives.
type Provider interface {
	Complete(ctx context.Context, req Request, onText func(string)) (Response, error)
}

// ErrNoKey is a provider without an API key.
var ErrNoKey = errors.New("API key is not set")

// ProviderError is a failed model call: the provider's message, with its
// HTTP status when there was one. It never holds the API key.
type ProviderError struct {
	Provider string
	Status   int
	Message  string
}

// Error is scrubbed of anything that looks like a credential: it becomes
// an agent's reason, an event and a log line.
func (e *ProviderError) Error() string {
	msg := Scrub(e.Message)
	if e.Status > 0 {
		return fmt.Sprintf("provider %s: HTTP %d: %s", e.Provider, e.Status, msg)
	}
	return fmt.Sprintf("provider %s: %s", e.Provider, msg)
}

// credentialRe matches what looks like a credential in a message: bearer
// and basic authorizations, provider keys (sk-..., sk-ant-...), oxios
// tokens, and key=value pairs whose key says what they are.
var credentialRe = regexp.MustCompile(`(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}|\b(sk|oxs|xai|gsk|pk|rk)[-_][A-Za-z0-9._-]{8,}|\b(api[-_]?key|token|secret|password|authorization)(["']?\s*[:=]\s*["']?)(?:(?:bearer|basic)\s+)?[^\s"'&,]{6,}`)

// keys are the configured provider keys, scrubbed wherever they appear.
var keys sync.Map

// Scrub replaces what looks like a credential in s, and every configured
// provider key, with [REDACTED].
func Scrub(s string) string {
	keys.Range(func(k, _ any) bool {
		s = strings.ReplaceAll(s, k.(string), "[REDACTED]")
		return true
	})
	return credentialRe.ReplaceAllStringFunc(s, func(m string) string {
		if sub := credentialRe.FindStringSubmatch(m); sub[3] != "" {
			return sub[3] + sub[4] + "[REDACTED]"
		}
		return "[REDACTED]"
	})
}

// rememberKey makes Scrub redact key.
func rememberKey(key string) {
	if len(key) >= 8 {
		keys.Store(key, struct{}{})
	}
}

// Providers are the provider names a model id may start with.
var Providers = []string{"openai", "anthropic", "ollama"}

// SplitModel splits "provider/model" and checks the provider.
func SplitModel(id string) (provider, model string, err error) {
	provider, model, ok := strings.Cut(id, "/")
	if !ok || provider == "" || model == "" {
		return "", "", fmt.Errorf("must be provider/model such as openai/gpt-4.1-mini (providers: %s; got %q)", strings.Join(Providers, ", "), id)
	}
	if !slices.Contains(Providers, provider) {
		return "", "", fmt.Errorf("unknown provider %q (providers: %s)", provider, strings.Join(Providers, ", "))
	}
	return provider, model, nil
}

// Breaker is a per-provider circuit breaker: after Threshold failed calls
// in a row (each already retried), calls fail fast for Cooldown; then a
// single call is let through to probe the provider, and its outcome closes
// the circuit or opens it for another Cooldown.
type Breaker struct {
	Threshold int
	Cooldown  time.Duration

	mu       sync.Mutex
	failures map[string]int
	openTill map[string]time.Time
	probing  map[string]bool
	now      func() time.Time
}

// NewBreaker returns a breaker with the given limits.
func NewBreaker(threshold int, cooldown time.Duration) *Breaker {
	return &Breaker{Threshold: threshold, Cooldown: cooldown, failures: map[string]int{},
		openTill: map[string]time.Time{}, probing: map[string]bool{}, now: time.Now}
}

// Allow returns an error while provider's circuit is open.
func (b *Breaker) Allow(provider string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	till, open := b.openTill[provider]
	if !open {
		return nil
	}
	if b.now().After(till) && !b.probing[provider] {
		b.probing[provider] = true // this call is the probe
		return nil
	}
	return &ProviderError{Provider: provider, Message: fmt.Sprintf("unavailable: %d calls in a row failed; not calling it again until %s", b.failures[provider], till.UTC().Format(time.RFC3339))}
}

// Record counts a call's outcome. Only failures of the provider itself
// (unreachable, 429, 5xx) open the circuit.
func (b *Breaker) Record(provider string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		b.probing[provider] = false // the agent stopped: that says nothing of the provider
		return
	}
	var pe *ProviderError
	if err == nil || (errors.As(err, &pe) && pe.Status > 0 && pe.Status < 500 && pe.Status != 429) {
		b.failures[provider] = 0
		delete(b.openTill, provider)
		b.probing[provider] = false
		return
	}
	b.failures[provider]++
	b.probing[provider] = false
	if b.failures[provider] >= b.Threshold {
		b.openTill[provider] = b.now().Add(b.Cooldown)
	}
}
