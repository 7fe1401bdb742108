package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/oxios/oxios/internal/sandbox"
	"github.com/oxios/oxios/internal/store"
)

// Names lists the built-in tools.
var Names = []string{"read_file", "write_file", "edit_file", "list_dir", "glob", "grep", "exec", "http_fetch", "spawn_agent", "state_get", "state_put"}

// Def describes a tool to the model.
type Def struct {
	Name        string
	Description string
	// Schema is the JSON schema of the arguments object.
	Schema map[string]any
}

type callKey struct{}

// WithCallKey marks ctx with the calling tool call's place in its run.
func WithCallKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, callKey{}, key)
}

// CallKey is the key set by WithCallKey, or "".
func CallKey(ctx context.Context) string {
	k, _ := ctx.Value(callKey{}).(string)
	return k
}

// Spawner runs a sub-agent to its end and returns its final output.
type Spawner interface {
	SpawnSub(ctx context.Context, parentID, goal, name, model string) (output string, err error)
}

// State is the state store as the state tools see it; *store.Store is one.
type State interface {
	Get(ctx context.Context, ns, key string) (store.Entry, error)
	Put(ctx context.Context, ns, key string, value []byte) (uint64, error)
}

// Env is what tools work with for one agent.
type Env struct {
	Gate *Gate
	// Sandbox confines the exec tool's programs; its Dir and Tmp are set
	// from the workspace. The zero value is the strictest sandbox.
	Sandbox sandbox.Policy
	AgentID string
	Spawner Spawner
	State   State
	// Approved is set for a call a human has approved.
	Approved bool
}

// sandbox is the exec tool's sandbox, in the workspace.
func (e *Env) sandbox() sandbox.Policy {
	sb := e.Sandbox
	if sb.Mode == "" {
		sb = sandbox.Policy{Mode: sandbox.Enforce, Network: sandbox.NetNone}
	}
	if sb.Mode != sandbox.Off {
		sb.Dir = e.Gate.Workspace()
		sb.Tmp = filepath.Join(sb.Dir, ".tmp")
	}
	return sb
}

// Result limits, so one call cannot flood the model's context.
const (
	maxRead    = 256 << 10
	maxEntries = 1000
	maxMatches = 500
)

func obj(props map[string]any, required ...string) map[string]any {
	if required == nil {
		required = []string{} // null is not a valid "required" for OpenAI
	}
	return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

// Known reports whether name is a built-in tool.
func Known(name string) bool {
	for _, d := range Defs() {
		if d.Name == name {
			return true
		}
	}
	return false
}

// Defs describes every built-in tool.
func Defs() []Def {
	return []Def{
		{"read_file", "Read a text file. Paths are relative to your workspace.", obj(map[string]any{"path": str("file to read")}, "path")},
		{"write_file", "Create or overwrite a file with the given content (parent directories are created).", obj(map[string]any{"path": str("file to write"), "content": str("the whole new content")}, "path", "content")},
		{"edit_file", "Replace exactly one occurrence of old with new in a file. Fails if old is missing or occurs more than once.", obj(map[string]any{"path": str("file to edit"), "old": str("exact text to replace"), "new": str("replacement text")}, "path", "old", "new")},
		{"list_dir", "List a directory: one entry per line, directories end with /.", obj(map[string]any{"path": str("directory (default: the workspace)")})},
		{"glob", "Find files by doublestar glob, relative to the workspace (e.g. **/*.go).", obj(map[string]any{"pattern": str("glob pattern")}, "pattern")},
		{"grep", "Search files for a regular expression; prints path:line: text.", obj(map[string]any{"pattern": str("RE2 regular expression"), "path": str("file or directory (default: the workspace)"), "glob": str("only files matching this glob, e.g. *.go")}, "pattern")},
		{"exec", "Run an allowed program in the workspace and return its exit code and output.", obj(map[string]any{
			"command": str("program name or path"), "args": map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			"shell": map[string]any{"type": "boolean", "description": "run command as a /bin/sh command line (only if the policy allows)"},
			"env":   map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}},
		}, "command")},
		{"http_fetch", "Fetch a URL over HTTP(S) from an allowed host; returns the status and body.", obj(map[string]any{"url": str("http or https URL"), "method": str("GET (default), POST, PUT, DELETE, ..."), "body": str("request body")}, "url")},
		{"spawn_agent", "Start a sub-agent on a goal, wait for it and return its final answer.", obj(map[string]any{"goal": str("what the sub-agent must do"), "name": str("its name"), "model": str("provider/model (default: yours)")}, "goal")},
		{"state_get", "Read a JSON document from the state store.", obj(map[string]any{"namespace": str("namespace"), "key": str("key")}, "namespace", "key")},
		{"state_put", "Write a JSON document to the state store; returns its new revision.", obj(map[string]any{"namespace": str("namespace"), "key": str("key"), "value": map[string]any{"description": "any JSON value"}}, "namespace", "key", "value")},
	}
}

// Call runs tool name with its JSON arguments through the gate. An error
// is what the model sees as the tool's failure; a *Denied error is a
// policy decision.
func Call(ctx context.Context, env *Env, name string, args json.RawMessage) (string, error) {
	if !slices.Contains(Names, name) {
		return "", fmt.Errorf("unknown tool %q (tools: %s)", name, strings.Join(Names, ", "))
	}
	if !env.Approved {
		if err := env.Gate.Asks(name); err != nil {
			return "", err
		}
	}
	var a struct {
		Path, Content, Old, New, Pattern, Glob string
		Command                                string
		Args                                   []string
		Shell                                  bool
		Env                                    map[string]string
		URL, Method, Body                      string
		Goal, Name, Model                      string
		Namespace, Key                         string
		Value                                  json.RawMessage
	}
	if len(bytes.TrimSpace(args)) == 0 {
		args = []byte("{}")
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return "", fmt.Errorf("arguments are not a valid JSON object: %v", err)
	}
	switch name {
	case "read_file":
		return readFile(env.Gate, a.Path)
	case "write_file":
		return writeFile(env.Gate, a.Path, a.Content)
	case "edit_file":
		return editFile(env.Gate, a.Path, a.Old, a.New)
	case "list_dir":
		return listDir(env.Gate, a.Path)
	case "glob":
		return glob(ctx, env.Gate, a.Pattern)
	case "grep":
		return grep(ctx, env.Gate, a.Pattern, a.Path, a.Glob)
	case "exec":
		return execTool(ctx, env.Gate, env.sandbox(), env.AgentID, a.Command, a.Args, a.Shell, a.Env)
	case "http_fetch":
		return httpFetch(ctx, env.Gate, a.URL, a.Method, a.Body)
	case "spawn_agent":
		if a.Goal == "" {
			return "", errors.New("goal is required")
		}
		if env.Spawner == nil {
			return "", errors.New("sub-agents are not available here")
		}
		return env.Spawner.SpawnSub(ctx, env.AgentID, a.Goal, a.Name, a.Model)
	case "state_get":
		e, err := env.State.Get(ctx, a.Namespace, a.Key)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("revision %d\n%s", e.Revision, e.Value), nil
	default: // state_put
		if len(a.Value) == 0 {
			return "", errors.New("value is required")
		}
		rev, err := env.State.Put(ctx, a.Namespace, a.Key, a.Value)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("stored %s/%s at revision %d", a.Namespace, a.Key, rev), nil
	}
}

func readFile(g *Gate, path string) (string, error) {
	p, err := g.Path("read_file", path)
	if err != nil {
		return "", err
	}
	f, err := openRegular(p)
	if err != nil {
		return "", cleanErr(err, path)
	}
	defer f.Close()
	b := make([]byte, maxRead+1)
	n, _ := io.ReadFull(f, b)
	if n > maxRead {
		return string(b[:maxRead]) + fmt.Sprintf("\n[truncated: the file is longer than %d KiB]", maxRead>>10), nil
	}
	return string(b[:n]), nil
}

func writeFile(g *Gate, path, content string) (string, error) {
	p, err := g.Path("write_file", path)
	if err != nil {
		return "", err
	}
	if err := mkdirAllNoFollow(filepath.Dir(p), 0o755); err != nil {
		return "", cleanErr(err, path)
	}
	if err := writeNoFollow(p, []byte(content), 0o644); err != nil {
		return "", cleanErr(err, path)
	}
	return fmt.Sprintf("wrote %d bytes to %s", len(content), path), nil
}

func editFile(g *Gate, path, old, new string) (string, error) {
	p, err := g.Path("edit_file", path)
	if err != nil {
		return "", err
	}
	if old == "" {
		return "", errors.New("old must not be empty")
	}
	f, err := openRegular(p)
	if err != nil {
		return "", cleanErr(err, path)
	}
	fi, _ := f.Stat()
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return "", cleanErr(err, path)
	}
	switch n := strings.Count(string(b), old); n {
	case 0:
		return "", fmt.Errorf("old text not found in %s", path)
	case 1:
	default:
		return "", fmt.Errorf("old text occurs %d times in %s; include more context to make it unique", n, path)
	}
	mode := os.FileMode(0o644)
	if fi != nil {
		mode = fi.Mode().Perm()
	}
	if err := writeNoFollow(p, []byte(strings.Replace(string(b), old, new, 1)), mode); err != nil {
		return "", cleanErr(err, path)
	}
	return "edited " + path, nil
}

func listDir(g *Gate, path string) (string, error) {
	if path == "" {
		path = "."
	}
	p, err := g.Path("list_dir", path)
	if err != nil {
		return "", err
	}
	d, err := openNoFollow(p, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return "", cleanErr(err, path)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return "", cleanErr(err, path)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	var b strings.Builder
	for i, e := range ents {
		if i == maxEntries {
			fmt.Fprintf(&b, "[%d more entries]\n", len(ents)-i)
			break
		}
		b.WriteString(e.Name())
		if e.IsDir() {
			b.WriteByte('/')
		}
		b.WriteByte('\n')
	}
	if len(ents) == 0 {
		return "(empty directory)", nil
	}
	return b.String(), nil
}

func glob(ctx context.Context, g *Gate, pattern string) (string, error) {
	if pattern == "" || filepath.IsAbs(pattern) || !doublestar.ValidatePattern(pattern) {
		return "", fmt.Errorf("pattern must be a valid glob relative to the workspace (got %q)", pattern)
	}
	var out []string
	err := doublestar.GlobWalk(os.DirFS(g.Workspace()), pattern, func(p string, d fs.DirEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := g.Path("glob", p); err != nil {
			return nil // excluded by the policy: not shown
		}
		out = append(out, p)
		if len(out) >= maxEntries {
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(out) == 0 {
		return "no matches", nil
	}
	return strings.Join(out, "\n"), nil
}

func grep(ctx context.Context, g *Gate, pattern, path, only string) (string, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return "", fmt.Errorf("pattern: %v", err)
	}
	if path == "" {
		path = "."
	}
	root, err := g.Path("grep", path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	matches := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if only != "" {
			if ok, _ := doublestar.Match(only, d.Name()); !ok {
				return nil
			}
		}
		if _, err := g.Path("grep", p); err != nil {
			return nil
		}
		f, err := openRegular(p)
		if err != nil {
			return nil // FIFOs, devices and unreadable files are skipped
		}
		defer f.Close()
		rel, _ := filepath.Rel(g.Workspace(), p)
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			if re.Match(sc.Bytes()) {
				fmt.Fprintf(&b, "%s:%d: %s\n", rel, n, truncate(sc.Text(), 300))
				if matches++; matches >= maxMatches {
					return fs.SkipAll
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if matches == 0 {
		return "no matches", nil
	}
	return b.String(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cleanErr drops the resolved path from an OS error, keeping the path the
// model gave.
func cleanErr(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", path, pe.Err)
	}
	return err
}

// openRegular opens p for reading only if it is a regular file. The open
// does not block, so a FIFO planted in the workspace cannot hang a tool.
func openRegular(p string) (*os.File, error) {
	f, err := openNoFollow(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		if fi.IsDir() {
			return nil, &fs.PathError{Op: "read", Path: p, Err: errors.New("is a directory")}
		}
		return nil, &fs.PathError{Op: "read", Path: p, Err: errors.New("not a regular file")}
	}
	return f, nil
}

// writeNoFollow writes b to p (created with perm, or truncated), opened
// without following symlinks.
// The open does not block and the file must be a regular one, so a FIFO
// planted in the workspace cannot hang a tool.
func writeNoFollow(p string, b []byte, perm os.FileMode) error {
	f, err := openNoFollow(p, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, perm)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "write", Path: p, Err: errors.New("not a regular file")}
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}
