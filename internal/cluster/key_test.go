package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Init writes a new key (0600), adopts a home's audit key, and never
// replaces a key that is there.
func TestInit(t *testing.T) {
	dir := t.TempDir()
	path, audit := filepath.Join(dir, "secrets", "cluster.key"), filepath.Join(dir, "secrets", "audit.key")
	adopted, err := Init(path, audit)
	if err != nil || adopted {
		t.Fatalf("a new key: adopted=%v %v", adopted, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key's mode: %v %v", fi.Mode(), err)
	}
	key, err := LoadKey(path)
	if err != nil || len(key) != 32 {
		t.Fatalf("load: %d bytes, %v", len(key), err)
	}
	if _, err := Init(path, audit); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second init replaced the key: %v", err)
	}
	// A home with an audit key: that key becomes the cluster key.
	home := t.TempDir()
	own := filepath.Join(home, "audit.key")
	os.WriteFile(own, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	adopted, err = Init(filepath.Join(home, "cluster.key"), own)
	if err != nil || !adopted {
		t.Fatalf("adopt: %v %v", adopted, err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "cluster.key")); strings.TrimSpace(string(b)) != strings.Repeat("ab", 32) {
		t.Fatalf("the adopted key is %q", b)
	}
	// Derived secrets differ by use and from the key.
	if Derive(key, "route") == Derive(key, "client") || strings.Contains(Derive(key, "route"), strings.Repeat("ab", 4)) {
		t.Fatal("derived secrets are not distinct")
	}
	if _, err := LoadKey(filepath.Join(home, "none")); err == nil || !strings.Contains(err.Error(), "oxios cluster init") {
		t.Fatalf("a missing key: %v", err)
	}
}
