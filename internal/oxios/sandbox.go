package oxios

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// Modes of a sandbox.
const (
	// Enforce refuses to start a program whose sandbox cannot be applied.
	Enforce = "enforce"
	// BestEffort applies what the kernel offers and records the rest.
	BestEffort = "best_effort"
	// Off starts the program unconfined.
	Off = "off"
)

// Networks a sandbox may give.
const (
	NetNone     = "none"
	NetLoopback = "loopback"
	NetAny      = "any"
)

// SandboxSpec is the sandbox a spawn spec asks for; every omitted field keeps the
// configured default.
type SandboxSpec struct {
	Mode string `json:"mode,omitempty"`
	// Read and Write are absolute paths the program may read (and execute)
	// or also write, besides its working directory and the system.
	Read    []string      `json:"read,omitempty"`
	Write   []string      `json:"write,omitempty"`
	Network string        `json:"network,omitempty"`
	Limits  SandboxLimits `json:"limits,omitzero"`
}

// SandboxLimits are resource limits; 0 means the default (in a spec) or none (in
// an effective sandbox).
type SandboxLimits struct {
	// MemoryMB caps the data segment (RLIMIT_DATA: heap and private
	// writable mappings), in MiB.
	MemoryMB int64 `json:"memory_mb,omitempty"`
	// CPUSeconds caps CPU time (RLIMIT_CPU).
	CPUSeconds int64 `json:"cpu_seconds,omitempty"`
	// OpenFiles caps open file descriptors (RLIMIT_NOFILE).
	OpenFiles int64 `json:"open_files,omitempty"`
	// Processes caps processes and threads (RLIMIT_NPROC, counted per
	// user by the kernel; oxios also stops an agent whose process group
	// reaches it).
	Processes int64 `json:"processes,omitempty"`
	// FileSizeMB caps the size of a file written (RLIMIT_FSIZE), in MiB.
	FileSizeMB int64 `json:"file_size_mb,omitempty"`
}

// UnmarshalJSON decodes s strictly: an unknown key is an *InvalidError
// naming it ("sandbox.colour").
func (s *SandboxSpec) UnmarshalJSON(b []byte) error {
	var v struct {
		Mode    string          `json:"mode"`
		Read    []string        `json:"read"`
		Write   []string        `json:"write"`
		Network string          `json:"network"`
		Limits  json.RawMessage `json:"limits"`
	}
	if err := strictJSON(b, &v, "sandbox."); err != nil {
		return err
	}
	var l SandboxLimits
	if len(v.Limits) > 0 && string(v.Limits) != "null" {
		if err := strictJSON(v.Limits, &l, "sandbox.limits."); err != nil {
			return err
		}
	}
	*s = SandboxSpec{Mode: v.Mode, Read: v.Read, Write: v.Write, Network: v.Network, Limits: l}
	return nil
}

func strictJSON(b []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return invalid(prefix+name, "unknown field (fields: %s)", known[prefix])
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return invalid(prefix+te.Field, "must be %s (got %s)", te.Type.Kind(), te.Value)
	}
	return invalid(strings.TrimSuffix(prefix, "."), "%v", err)
}

var known = map[string]string{
	"sandbox.":        "mode, read, write, network, limits",
	"sandbox.limits.": "memory_mb, cpu_seconds, open_files, processes, file_size_mb",
}

// Over returns l with every limit that over sets replacing l's.
func (l SandboxLimits) Over(over SandboxLimits) SandboxLimits {
	pick := func(a, b int64) int64 {
		if b != 0 {
			return b
		}
		return a
	}
	return SandboxLimits{
		MemoryMB: pick(l.MemoryMB, over.MemoryMB), CPUSeconds: pick(l.CPUSeconds, over.CPUSeconds),
		OpenFiles: pick(l.OpenFiles, over.OpenFiles), Processes: pick(l.Processes, over.Processes),
		FileSizeMB: pick(l.FileSizeMB, over.FileSizeMB),
	}
}

// Merge returns d, the defaults, with what s sets.
func (d SandboxSpec) Merge(s SandboxSpec) SandboxSpec {
	out := d
	if s.Mode != "" {
		out.Mode = s.Mode
	}
	if s.Network != "" {
		out.Network = s.Network
	}
	out.Read = uniq(slices.Concat(d.Read, s.Read))
	out.Write = uniq(slices.Concat(d.Write, s.Write))
	out.Limits = d.Limits.Over(s.Limits)
	return out
}

// SandboxEffective is the sandbox a program got, as shown on its agent's record.
type SandboxEffective struct {
	Mode string `json:"mode"`
	// Landlock is the Landlock ABI applied (0: none).
	Landlock int      `json:"landlock_abi"`
	Read     []string `json:"read"`
	Write    []string `json:"write"`
	Network  string   `json:"network"`
	// NetworkBy says what enforces Network: "namespace", "landlock" (TCP
	// only) or "" (nothing: any).
	NetworkBy string        `json:"network_by,omitempty"`
	Limits    SandboxLimits `json:"limits"`
	// Unenforced lists what was asked for and is not enforced, with why.
	Unenforced []string `json:"unenforced,omitempty"`
}

func uniq(l []string) []string {
	out := l[:0:0]
	for _, v := range l {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
