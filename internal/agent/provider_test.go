package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/supervisor"
)

// No tool schema goes out with "required": null, which OpenAI refuses.
func TestToolSchemasHaveNoNullRequired(t *testing.T) {
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: "ok"})
	s := newStack(t, llm, nil)
	s.run(supervisor.Spec{Goal: "hi"})
	b, _ := json.Marshal(llm.Request(0)["tools"])
	if strings.Contains(string(b), `"required":null`) {
		i := strings.Index(string(b), `"name":"list_dir"`)
		t.Errorf("tools carry \"required\":null: ...%s...", string(b)[i:i+200])
	}
}

// An empty tool result does not become an empty text block, which
// Anthropic refuses.
func TestEmptyToolResult(t *testing.T) {
	llm := agenttest.New(t, testKey,
		agenttest.Reply{Calls: []agenttest.ToolCall{agenttest.Call("c1", "read_file", map[string]string{"path": "empty.txt"})}},
		agenttest.Reply{Text: "done"})
	s := newStack(t, llm, nil)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o644)
	s.run(supervisor.Spec{Goal: "read", Model: "anthropic/claude-sonnet-4-5", Dir: dir})
	if m := llm.MessagesJSON(1); strings.Contains(m, `"text":""`) {
		t.Errorf("empty text block sent to Anthropic: %s", m)
	}
}
