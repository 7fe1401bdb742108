package kernel

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A restore killed in the middle of its swap (here: after the old data
// directory was moved aside, before the new one was moved in) is finished
// by the next start: the new data and secrets are in place, the old kept.
func TestFinishRestore(t *testing.T) {
	home := t.TempDir()
	work := filepath.Join(home, ".restore-x")
	for _, d := range []string{filepath.Join(work, "data"), filepath.Join(home, "data.before-restore-s"), filepath.Join(home, "secrets")} {
		os.MkdirAll(d, 0o700)
	}
	os.WriteFile(filepath.Join(work, "data", "new"), nil, 0o600)
	os.WriteFile(filepath.Join(home, "data.before-restore-s", "old"), nil, 0o600)
	os.WriteFile(filepath.Join(home, "secrets", "audit.key"), []byte("old key"), 0o600)
	os.WriteFile(filepath.Join(home, "secrets", ".audit.key.restore-1"), []byte("new key"), 0o600)
	j := journal{Work: work, Steps: []swapStep{
		{New: filepath.Join(work, "data"), Live: filepath.Join(home, "data"), Old: filepath.Join(home, "data.before-restore-s")},
		{New: filepath.Join(home, "secrets", ".audit.key.restore-1"), Live: filepath.Join(home, "secrets", "audit.key"), Old: filepath.Join(home, "secrets", "audit.key.before-restore-s")},
	}}
	b, _ := json.Marshal(j)
	os.WriteFile(filepath.Join(home, journalName), b, 0o600)

	// A start created its empty layout before finishing (an older binary,
	// or the CLI): an empty data directory is in the way, harmlessly.
	os.MkdirAll(filepath.Join(home, "data"), 0o700)
	os.MkdirAll(filepath.Join(home, ".restore-killed-before-its-swap"), 0o700)
	did, err := FinishRestore(home)
	if err != nil || !did {
		t.Fatal(did, err)
	}
	if _, err := os.Stat(filepath.Join(home, "data", "new")); err != nil {
		t.Fatal("the new data is not in place")
	}
	if k, _ := os.ReadFile(filepath.Join(home, "secrets", "audit.key")); string(k) != "new key" {
		t.Fatalf("audit.key: %q", k)
	}
	if k, _ := os.ReadFile(filepath.Join(home, "secrets", "audit.key.before-restore-s")); string(k) != "old key" {
		t.Fatalf("the old key was not kept: %q", k)
	}
	for _, gone := range []string{journalName, ".restore-x", ".restore-killed-before-its-swap"} {
		if _, err := os.Stat(filepath.Join(home, gone)); !os.IsNotExist(err) {
			t.Fatalf("%s left behind", gone)
		}
	}
	if did, err := FinishRestore(home); err != nil || did {
		t.Fatalf("nothing to finish: %v %v", did, err)
	}
}
