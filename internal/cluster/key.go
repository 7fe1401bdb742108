package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The cluster key is one secret shared by every node, 32 bytes written as
// 64 hex digits in secrets/cluster.key (as audit.key is). It is the audit
// key of the cluster's one chain itself, so that a home's existing audit
// key can become the cluster key and its trail still verifies; the
// passwords of routes and of the embedded server's clients are derived
// from it with their own labels.

// Init writes a new cluster key at path (0600), refusing to replace one.
// When the home already has an audit key (auditKey), that key becomes the
// cluster key, so the home's audit trail keeps verifying as the cluster's;
// adopted says so.
func Init(path, auditKey string) (adopted bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, fmt.Errorf("%s already exists: it is this node's cluster key (copy it to the other nodes; delete it only to make a new cluster)", path)
	}
	key, err := readKey(auditKey)
	switch {
	case err == nil:
		adopted = true
	case errors.Is(err, os.ErrNotExist):
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return false, err
		}
	default:
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	return adopted, f.Close()
}

// LoadKey reads the cluster key at path.
func LoadKey(path string) ([]byte, error) {
	key, err := readKey(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("this node has no %s: run 'oxios cluster init' on the first node and copy its secrets/cluster.key here (mode 0600) before the first start", path)
	}
	return key, err
}

func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, derr := hex.DecodeString(strings.TrimSpace(string(b)))
	if derr != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s is damaged (want 64 hex digits)", path)
	}
	return key, nil
}

// Derive is a secret for one use (label) of the cluster key: the hex of
// HMAC-SHA256(key, "oxios "+label). Knowing one does not give the key nor
// another label's secret.
func Derive(key []byte, label string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("oxios " + label))
	return hex.EncodeToString(m.Sum(nil))
}
