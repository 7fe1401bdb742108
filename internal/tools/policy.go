// Package tools holds the built-in tools of language-model agents and the
// policy gate every tool call goes through: which paths an agent may touch,
// which programs it may run and how, which hosts it may reach, and which
// tools need a human's approval.
package tools

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/bmatcuk/doublestar/v4"
)

// The policy vocabulary, defined in package oxios.
type (
	Policy        = oxios.Policy
	PathPolicy    = oxios.PathPolicy
	ExecPolicy    = oxios.ExecPolicy
	NetworkPolicy = oxios.NetworkPolicy
)

// ValidatePolicy checks p; errors name the field under prefix.
func ValidatePolicy(p Policy, prefix string) error {
	for i, pat := range append(slices.Clone(p.Paths.Allow), p.Paths.Deny...) {
		field := fmt.Sprintf("%spaths.allow[%d]", prefix, i)
		if i >= len(p.Paths.Allow) {
			field = fmt.Sprintf("%spaths.deny[%d]", prefix, i-len(p.Paths.Allow))
		}
		if pat == "" || !doublestar.ValidatePattern(filepath.ToSlash(pat)) {
			return &InvalidError{Field: field, Msg: fmt.Sprintf("is not a valid glob (got %q)", pat)}
		}
	}
	for i, a := range p.Exec.Allow {
		if a == "" || (strings.Contains(a, "/") && !filepath.IsAbs(a)) {
			return &InvalidError{Field: fmt.Sprintf("%sexec.allow[%d]", prefix, i), Msg: fmt.Sprintf("must be a program name or an absolute path (got %q)", a)}
		}
	}
	if p.Exec.Timeout != "" {
		if d, err := time.ParseDuration(p.Exec.Timeout); err != nil || d <= 0 || d > 24*time.Hour {
			return &InvalidError{Field: prefix + "exec.timeout", Msg: fmt.Sprintf("must be a duration from 1ms to 24h such as \"60s\" (got %q)", p.Exec.Timeout)}
		}
	}
	if p.Exec.MaxOutputKB < 0 || p.Exec.MaxOutputKB > MaxOutputKB {
		return &InvalidError{Field: prefix + "exec.max_output_kb", Msg: fmt.Sprintf("must be from 1 to %d (got %d)", MaxOutputKB, p.Exec.MaxOutputKB)}
	}
	for i, h := range p.Network.Allow {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return &InvalidError{Field: fmt.Sprintf("%snetwork.allow[%d]", prefix, i), Msg: fmt.Sprintf("must be a host such as \"example.com\", \"*.example.com\" or \"host:port\" (got %q)", h)}
		}
	}
	if p.AskTimeout != "" {
		if d, err := time.ParseDuration(p.AskTimeout); err != nil || d < 0 {
			return &InvalidError{Field: prefix + "ask_timeout", Msg: fmt.Sprintf("must be a duration such as \"10m\", or \"0s\" for none (got %q)", p.AskTimeout)}
		}
	}
	for i, t := range p.Ask {
		if !slices.Contains(Names, t) {
			return &InvalidError{Field: fmt.Sprintf("%sask[%d]", prefix, i), Msg: fmt.Sprintf("unknown tool %q (tools: %s)", t, strings.Join(Names, ", "))}
		}
	}
	return nil
}

// MaxOutputKB is the most of a program's output the exec tool returns.
const MaxOutputKB = oxios.MaxOutputKB

// InvalidError is a policy that cannot be used; Field names what is wrong.
type InvalidError = oxios.InvalidError

// Denied is a call the policy does not allow. It goes back to the model as
// the tool's error, so that it can adapt.
type Denied struct {
	Tool string `json:"tool"`
	// Rule is paths, exec, network or ask.
	Rule   string `json:"rule"`
	Target string `json:"target"`
	Reason string `json:"reason"`
}

func (d *Denied) Error() string {
	return fmt.Sprintf("denied by policy (%s): %s", d.Rule, d.Reason)
}

// Gate applies one agent's policy.
type Gate struct {
	workspace  string // symlink-resolved
	allow      []string
	deny       []string
	exec       ExecPolicy
	shell      bool
	hosts      []string
	ask        []string
	askTimeout string
}

// NewGate returns the gate for an agent working in workspace.
func NewGate(workspace string, p Policy) (*Gate, error) {
	ws, err := realPath(workspace)
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	g := &Gate{workspace: ws, exec: p.Exec, hosts: p.Network.Allow, ask: p.Ask, askTimeout: p.AskTimeout}
	g.shell = p.Exec.Shell != nil && *p.Exec.Shell
	allow := p.Paths.Allow
	if len(allow) == 0 {
		allow = []string{"./**"}
	}
	for _, pat := range allow {
		g.allow = append(g.allow, g.pattern(pat))
	}
	for _, pat := range p.Paths.Deny {
		g.deny = append(g.deny, g.pattern(pat))
	}
	return g, nil
}

// Workspace is the agent's workspace, symlinks resolved.
func (g *Gate) Workspace() string { return g.workspace }

// pattern makes a glob absolute, so it compares with resolved paths. A
// relative pattern is relative to the workspace, whose path is taken
// literally (a '*' or '[' in it is not a wildcard); an absolute pattern has
// its fixed base symlink-resolved.
func (g *Gate) pattern(pat string) string {
	if !filepath.IsAbs(pat) {
		base, rel := g.workspace, filepath.ToSlash(filepath.Clean(pat))
		for rel == ".." || strings.HasPrefix(rel, "../") {
			base, rel = filepath.Dir(base), strings.TrimPrefix(strings.TrimPrefix(rel, ".."), "/")
		}
		if rel == "." || rel == "" {
			return escapeMeta(base)
		}
		return strings.TrimSuffix(escapeMeta(base), "/") + "/" + rel
	}
	base, rest := doublestar.SplitPattern(filepath.ToSlash(pat))
	if rb, err := realPath(base); err == nil {
		base = rb
	}
	base = escapeMeta(base)
	if rest == "" {
		return base
	}
	return strings.TrimSuffix(base, "/") + "/" + rest
}

// Path checks a path-like argument of tool and returns it absolute,
// cleaned and symlink-resolved: the path the tool must use.
func (g *Gate) Path(tool, p string) (string, error) {
	if p == "" {
		return "", errors.New("path is empty")
	}
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(g.workspace, abs)
	}
	real, err := realPath(abs)
	if err != nil {
		return "", err
	}
	for _, pat := range g.deny {
		if matchPath(pat, real) {
			return "", &Denied{Tool: tool, Rule: "paths", Target: p, Reason: fmt.Sprintf("%s is in a denied path (%s)", p, pat)}
		}
	}
	for _, pat := range g.allow {
		if matchPath(pat, real) {
			return real, nil
		}
	}
	// Where it resolves to is not said: outside the workspace, that would
	// tell the model about the daemon (its PID, through /proc/self).
	return "", &Denied{Tool: tool, Rule: "paths", Target: p, Reason: fmt.Sprintf("%s is outside the workspace; allowed: %s", p, strings.Join(g.allow, ", "))}
}

func matchPath(pat, p string) bool {
	if ok, _ := doublestar.Match(pat, p); ok {
		return true
	}
	// "dir/**" covers dir itself.
	if dir, ok := strings.CutSuffix(pat, "/**"); ok {
		m, _ := doublestar.Match(dir, p)
		return m
	}
	return false
}

// Program checks that the exec tool may run command and returns the path
// to run. A bare name is found on PATH and allowed by name; a path is
// allowed only by an absolute entry naming exactly that file.
func (g *Gate) Program(command, path string) (string, error) {
	deny := func(reason string) error {
		return &Denied{Tool: "exec", Rule: "exec", Target: command, Reason: reason}
	}
	if len(g.exec.Allow) == 0 {
		return "", deny("no program may run (the policy's exec.allow is empty)")
	}
	if !strings.Contains(command, "/") {
		if !slices.Contains(g.exec.Allow, command) {
			return "", deny(fmt.Sprintf("%s is not an allowed program (allowed: %s)", command, strings.Join(g.exec.Allow, ", ")))
		}
		p, err := lookPath(command, path)
		if err != nil {
			return "", err
		}
		return p, nil
	}
	abs := command
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(g.workspace, abs)
	}
	real, err := realPath(abs)
	if err != nil {
		return "", err
	}
	for _, a := range g.exec.Allow {
		if filepath.IsAbs(a) {
			if ra, err := realPath(a); err == nil && ra == real {
				return real, nil
			}
		}
	}
	return "", deny(fmt.Sprintf("%s is not an allowed program (allowed: %s)", command, strings.Join(g.exec.Allow, ", ")))
}

// Shell reports whether commands may run through /bin/sh -c. Turning it on
// is the policy's own choice; a shell can run any program.
func (g *Gate) Shell() error {
	if !g.shell {
		return &Denied{Tool: "exec", Rule: "exec", Target: "shell", Reason: "shell mode is off (the policy's exec.shell); run a program with args instead"}
	}
	return nil
}

// Args checks the path-like parts of a program's arguments against the
// path rules, so an allowed program is not pointed at files the agent may
// not touch: the argument itself, the value joined to a short option
// ("-C/x", "-t/x"), and every word of it that looks like a path ("..",
// "../x", "/x" inside "alias.x=!cat /x"). It is a first filter only: the
// sandbox is the boundary.
func (g *Gate) Args(args []string) error {
	for _, a := range args {
		for _, v := range pathWords(a) {
			if _, err := g.Path("exec", v); err != nil {
				return err
			}
		}
	}
	return nil
}

// urlRe matches URLs, which are not paths (a host's rules are the network
// policy's).
var urlRe = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s'"]*`)

// pathWords returns the parts of arg that could name a path.
func pathWords(arg string) []string {
	var out []string
	add := func(v string) {
		if v == "" || v == "/dev/null" || strings.Contains(v, "://") || slices.Contains(out, v) {
			return
		}
		if v == ".." || strings.Contains(v, "/") {
			out = append(out, v)
		}
	}
	if !strings.HasPrefix(arg, "-") {
		add(arg)
	} else if len(arg) > 2 && arg[1] != '-' {
		add(arg[2:]) // -C/x
	}
	for _, w := range strings.FieldsFunc(urlRe.ReplaceAllString(arg, " "), func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune("=:,;'\"!`()<>|&$", r)
	}) {
		if strings.HasPrefix(w, "-") && len(w) > 2 && w[1] != '-' {
			w = w[2:]
		}
		add(w)
	}
	return out
}

// Host checks that http_fetch may reach u.
func (g *Gate) Host(u *url.URL) error {
	deny := func(reason string) error {
		return &Denied{Tool: "http_fetch", Rule: "network", Target: u.Host, Reason: reason}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return deny(fmt.Sprintf("only http and https URLs can be fetched (got %q)", u.Scheme))
	}
	if len(g.hosts) == 0 {
		return deny("network access is off (the policy's network.allow is empty)")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	for _, a := range g.hosts {
		a = strings.ToLower(a)
		ah, ap, err := net.SplitHostPort(a)
		if err != nil {
			ah, ap = a, ""
		}
		if ap != "" && ap != port {
			continue
		}
		if ah == host || (strings.HasPrefix(ah, "*.") && strings.HasSuffix(host, ah[1:])) {
			return nil
		}
	}
	return deny(fmt.Sprintf("%s is not an allowed host (allowed: %s)", u.Host, strings.Join(g.hosts, ", ")))
}

// NeedsApproval reports whether a call of tool waits for a human's approval.
func (g *Gate) NeedsApproval(tool string) bool { return slices.Contains(g.ask, tool) }

// AskTimeout is how long an approval may stay pending (0: no limit).
func (g *Gate) AskTimeout() time.Duration {
	d, _ := time.ParseDuration(g.askTimeout)
	return max(d, 0)
}

// Asks denies a call that needs approval when no one can be asked.
func (g *Gate) Asks(tool string) error {
	if g.NeedsApproval(tool) {
		return &Denied{Tool: tool, Rule: "ask", Target: tool, Reason: tool + " needs a human's approval, and none can be asked here"}
	}
	return nil
}

// realPath returns p, absolute and cleaned, with every symlink in it
// resolved; the part of it that does not exist is kept as given. A dangling
// symlink resolves to where it points, so a write through it is checked
// where it would land.
func realPath(p string) (string, error) {
	return resolve(filepath.Clean(p), 0)
}

func resolve(p string, depth int) (string, error) {
	if depth > 40 {
		return "", fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s: not an absolute path", p)
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		if part == "" {
			continue
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if errors.Is(err, os.ErrNotExist) {
			return filepath.Join(append([]string{cur}, parts[i:]...)...), nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(cur, target)
		}
		rest := append([]string{target}, parts[i+1:]...)
		return resolve(filepath.Clean(filepath.Join(rest...)), depth+1)
	}
	return cur, nil
}

// escapeMeta escapes the glob metacharacters of a literal path.
func escapeMeta(p string) string {
	var b strings.Builder
	for _, r := range p {
		switch r {
		case '*', '?', '[', ']', '{', '}', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Widening lists the fields of over (a spec's policy) that widen the
// configured policy d, an admin's decision: a path glob that reaches out
// of the workspace and is not one of d's, fewer denied paths, a program,
// an environment variable or a host d does not allow, a shell d does not
// allow, a longer timeout or more output, and fewer tools that ask.
func Widening(d, over Policy) []string {
	var w []string
	for i, pat := range over.Paths.Allow {
		if !inWorkspace(pat) && !slices.Contains(d.Paths.Allow, pat) {
			w = append(w, fmt.Sprintf("policy.paths.allow[%d]", i))
		}
	}
	if over.Paths.Deny != nil {
		for _, pat := range d.Paths.Deny {
			if !slices.Contains(over.Paths.Deny, pat) {
				w = append(w, "policy.paths.deny")
				break
			}
		}
	}
	for i, a := range over.Exec.Allow {
		if !slices.Contains(d.Exec.Allow, a) {
			w = append(w, fmt.Sprintf("policy.exec.allow[%d]", i))
		}
	}
	if over.Exec.Shell != nil && *over.Exec.Shell && (d.Exec.Shell == nil || !*d.Exec.Shell) {
		w = append(w, "policy.exec.shell")
	}
	for i, e := range over.Exec.Env {
		if !slices.Contains(d.Exec.Env, e) {
			w = append(w, fmt.Sprintf("policy.exec.env[%d]", i))
		}
	}
	if over.Exec.Timeout != "" {
		o, _ := time.ParseDuration(over.Exec.Timeout)
		if dd, err := time.ParseDuration(d.Exec.Timeout); err == nil && dd > 0 && o > dd {
			w = append(w, "policy.exec.timeout")
		}
	}
	if over.Exec.MaxOutputKB > 0 && d.Exec.MaxOutputKB > 0 && over.Exec.MaxOutputKB > d.Exec.MaxOutputKB {
		w = append(w, "policy.exec.max_output_kb")
	}
	for i, h := range over.Network.Allow {
		if !slices.Contains(d.Network.Allow, h) {
			w = append(w, fmt.Sprintf("policy.network.allow[%d]", i))
		}
	}
	if over.Ask != nil {
		for _, t := range d.Ask {
			if !slices.Contains(over.Ask, t) {
				w = append(w, "policy.ask")
				break
			}
		}
	}
	return w
}

// inWorkspace reports whether a path glob stays inside the workspace: it
// is relative and does not climb out with "..".
func inWorkspace(pat string) bool {
	if filepath.IsAbs(pat) {
		return false
	}
	c := filepath.ToSlash(filepath.Clean(pat))
	return c != ".." && !strings.HasPrefix(c, "../") && !strings.Contains(c, "/../")
}
