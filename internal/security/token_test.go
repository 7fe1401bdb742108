package security

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestEnsureAdminToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets", "admin.token")
	h1, created, err := EnsureAdminToken(path)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("secrets dir mode %v, want 0700", di.Mode().Perm())
	}
	tok, err := ReadToken(path)
	if err != nil || !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+43 {
		t.Fatalf("token %q: %v", tok, err)
	}
	if !HashToken(tok).Equal(h1) || HashToken(tok+"x").Equal(h1) {
		t.Fatal("hash does not match the stored token")
	}
	h2, created, err := EnsureAdminToken(path)
	if err != nil || created || !h2.Equal(h1) {
		t.Fatalf("second call must keep the token: created=%v err=%v", created, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("left temp files behind: %v", entries)
	}
}

func TestConcurrentEnsureAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	var wg sync.WaitGroup
	hashes := make([]Hash, 8)
	for i := range hashes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, _, err := EnsureAdminToken(path)
			if err != nil {
				t.Error(err)
			}
			hashes[i] = h
		}()
	}
	wg.Wait()
	for _, h := range hashes[1:] {
		if !h.Equal(hashes[0]) {
			t.Fatal("concurrent creators ended with different tokens")
		}
	}
}

func TestReadTokenRefusesLoosePermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(path, []byte("oxs_abc\n"), 0o644)
	os.Chmod(path, 0o644)
	if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v, want a refusal naming chmod 600", err)
	}
	os.Chmod(path, 0o600)
	if tok, err := ReadToken(path); err != nil || tok != "oxs_abc" {
		t.Fatalf("got %q %v", tok, err)
	}
	if strings.Contains(err2str(ReadToken(filepath.Join(t.TempDir(), "none"))), "oxs_") {
		t.Fatal("error leaks a token")
	}
}

func err2str(_ string, err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
