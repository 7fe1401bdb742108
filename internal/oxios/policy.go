package oxios

// Policy is what an agent may touch. In a spec, a nil list keeps the
// configured default and a given one replaces it.
type Policy struct {
	Paths   PathPolicy    `json:"paths"`
	Exec    ExecPolicy    `json:"exec"`
	Network NetworkPolicy `json:"network"`
	// Ask lists tools that need a human's approval before each call.
	Ask []string `json:"ask"`
	// AskTimeout rejects an approval left pending this long ("0s": never).
	AskTimeout string `json:"ask_timeout,omitempty"`
}

// PathPolicy lists doublestar globs. Relative patterns are relative to the
// agent's workspace. An empty Allow means the workspace only.
type PathPolicy struct {
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

// ExecPolicy says which programs the exec tool may run.
type ExecPolicy struct {
	// Allow lists programs: a bare name is found on PATH, an absolute path
	// must match exactly. Empty: no program may run.
	Allow []string `json:"allow"`
	// Shell lets a call run a command line through /bin/sh -c.
	Shell *bool `json:"shell,omitempty"`
	// Env lists the environment variables a program may receive, besides
	// PATH, HOME (the workspace) and LANG.
	Env []string `json:"env"`
	// Timeout is the longest a program may run ("60s").
	Timeout string `json:"timeout,omitempty"`
	// MaxOutputKB caps the output returned to the model.
	MaxOutputKB int `json:"max_output_kb,omitempty"`
}

// NetworkPolicy lists the hosts http_fetch may reach: "example.com",
// "*.example.com" (any subdomain) or "host:port". Empty: none.
type NetworkPolicy struct {
	Allow []string `json:"allow"`
}

// Merge returns p with every field that over sets replacing p's.
func (p Policy) Merge(over Policy) Policy {
	if over.Paths.Allow != nil {
		p.Paths.Allow = over.Paths.Allow
	}
	if over.Paths.Deny != nil {
		p.Paths.Deny = over.Paths.Deny
	}
	if over.Exec.Allow != nil {
		p.Exec.Allow = over.Exec.Allow
	}
	if over.Exec.Shell != nil {
		p.Exec.Shell = over.Exec.Shell
	}
	if over.Exec.Env != nil {
		p.Exec.Env = over.Exec.Env
	}
	if over.Exec.Timeout != "" {
		p.Exec.Timeout = over.Exec.Timeout
	}
	if over.Exec.MaxOutputKB != 0 {
		p.Exec.MaxOutputKB = over.Exec.MaxOutputKB
	}
	if over.Network.Allow != nil {
		p.Network.Allow = over.Network.Allow
	}
	if over.Ask != nil {
		p.Ask = over.Ask
	}
	if over.AskTimeout != "" {
		p.AskTimeout = over.AskTimeout
	}
	return p
}

// MaxOutputKB is the most of a program's output that is kept, in KiB: what
// reaches the model, the checkpoints and the record is copied several
// times, and one 50 MB result once took the daemon from 56 MB to 554 MB.
// What goes past it is counted, never held.
const MaxOutputKB = 1024
