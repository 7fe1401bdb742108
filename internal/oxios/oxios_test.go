package oxios

import (
	"encoding/json"
	"errors"
	"testing"
)

// A role travels as its name, both ways; an unknown name is refused.
func TestRoleJSON(t *testing.T) {
	for _, r := range []Role{Viewer, Operator, Admin} {
		b, err := json.Marshal(Token{Role: r})
		if err != nil {
			t.Fatal(err)
		}
		var got Token
		if err := json.Unmarshal(b, &got); err != nil || got.Role != r {
			t.Fatalf("%s: %s decodes to %v, %v", r, b, got.Role, err)
		}
	}
	var tok Token
	if err := json.Unmarshal([]byte(`{"role":"root"}`), &tok); err == nil {
		t.Fatal("an unknown role decoded")
	}
}

// A sandbox spec is decoded strictly, naming the unknown field.
func TestSandboxSpecStrict(t *testing.T) {
	var s Spec
	err := json.Unmarshal([]byte(`{"kind":"process","command":"true","sandbox":{"limits":{"memory_mb":64,"colour":1}}}`), &s)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "sandbox.limits.colour" {
		t.Fatalf("got %v", err)
	}
	if err := json.Unmarshal([]byte(`{"sandbox":{"mode":"enforce","limits":{"memory_mb":64}}}`), &s); err != nil || s.Sandbox.Limits.MemoryMB != 64 {
		t.Fatalf("got %+v, %v", s.Sandbox, err)
	}
}

// Clip never cuts a character in two.
func TestClip(t *testing.T) {
	if got := Clip("héllo", 2); got != "h" {
		t.Fatalf("Clip cut inside é: %q", got)
	}
	if got := Clip("abc", 5); got != "abc" {
		t.Fatalf("got %q", got)
	}
}

// Merge keeps the defaults' paths and adds the spec's, once each.
func TestSandboxMerge(t *testing.T) {
	d := SandboxSpec{Mode: Enforce, Read: []string{"/a"}, Limits: SandboxLimits{MemoryMB: 10, OpenFiles: 5}}
	got := d.Merge(SandboxSpec{Read: []string{"/a", "/b"}, Limits: SandboxLimits{MemoryMB: 20}})
	if got.Mode != Enforce || len(got.Read) != 2 || got.Limits.MemoryMB != 20 || got.Limits.OpenFiles != 5 {
		t.Fatalf("got %+v", got)
	}
}
