// Package security owns API authentication: tokens, their storage as
// hashes, and the constant-time check of a presented token.
package security

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TokenPrefix starts every oxios API token, so tokens are easy to spot in
// secret scanners and easy to tell from other credentials.
const TokenPrefix = "oxs_"

// NewToken returns a fresh token: the prefix and 32 random bytes.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is the SHA-256 of a token; only hashes are kept in memory and storage.
type Hash [sha256.Size]byte

// HashToken hashes a token.
func HashToken(token string) Hash { return sha256.Sum256([]byte(token)) }

// Equal compares two hashes in constant time.
func (h Hash) Equal(o Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// EnsureAdminToken returns the hash of the admin token stored at path,
// creating the token (file mode 0600, directory 0700) when it does not exist.
// The token itself is never returned, so it cannot end up in a log.
func EnsureAdminToken(path string) (hash Hash, created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Hash{}, false, err
	}
	if tok, err := ReadToken(path); err == nil {
		return HashToken(tok), false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return Hash{}, false, err
	}
	tok, err := NewToken()
	if err != nil {
		return Hash{}, false, err
	}
	// Write to a private temp file and link it into place, so a reader never
	// sees a half-written token and a concurrent creator never overwrites.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".admin.token-*")
	if err != nil {
		return Hash{}, false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return Hash{}, false, err
	}
	if _, err := tmp.WriteString(tok + "\n"); err != nil {
		tmp.Close()
		return Hash{}, false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return Hash{}, false, err
	}
	if err := tmp.Close(); err != nil {
		return Hash{}, false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return EnsureAdminToken(path)
		}
		return Hash{}, false, err
	}
	return HashToken(tok), true, nil
}

// ReadToken reads a token file, refusing one that other users can read.
func ReadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by other users (mode %04o); run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, TokenPrefix) {
		return "", fmt.Errorf("%s does not hold an oxios token", path)
	}
	return tok, nil
}
