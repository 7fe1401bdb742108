package security

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SessionTTL is how long a dashboard session lasts.
const SessionTTL = 12 * time.Hour

// SessionsBucket holds dashboard sessions; entries expire with the TTL.
const SessionsBucket = "sessions"

// Sessions are the dashboard's logins: a session id in an HttpOnly cookie
// stands for the token it was opened with. Only the id's hash is stored.
type Sessions struct {
	kv     jetstream.KeyValue
	tokens *Tokens
}

type session struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	TokenID string    `json:"token_id,omitempty"`
	Expires time.Time `json:"expires"`
}

// OpenSessions opens the sessions bucket.
func OpenSessions(ctx context.Context, js jetstream.JetStream, tokens *Tokens, replicas int) (*Sessions, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SessionsBucket, History: 1,
		TTL: SessionTTL, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", SessionsBucket, err)
	}
	return &Sessions{kv: kv, tokens: tokens}, nil
}

func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// Open starts a session for p and returns its id (the cookie's value).
func (s *Sessions) Open(ctx context.Context, p Principal) (string, time.Time, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, err
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	exp := time.Now().Add(SessionTTL).UTC()
	v, _ := json.Marshal(session{Name: p.Name, Role: p.Role, TokenID: p.TokenID, Expires: exp})
	if _, err := s.kv.Put(ctx, sessionKey(id), v); err != nil {
		return "", time.Time{}, err
	}
	return id, exp, nil
}

// ErrUnavailable is a session store that cannot answer now (it is not the
// session's fault: the caller should try again, not log in again).
var ErrUnavailable = errors.New("sessions cannot be checked now")

// Lookup returns who a session stands for, if it is open and its token is
// still valid (a revoked or expired token ends its sessions at once). An
// error (ErrUnavailable) means the store could not be read.
func (s *Sessions) Lookup(ctx context.Context, id string) (Principal, bool, error) {
	if id == "" || len(id) > 100 {
		return Principal{}, false, nil
	}
	e, err := s.kv.Get(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var ss session
	if json.Unmarshal(e.Value(), &ss) != nil || !time.Now().Before(ss.Expires) {
		return Principal{}, false, nil
	}
	p := Principal{Name: ss.Name, Role: ss.Role, TokenID: ss.TokenID}
	if p.TokenID != "" {
		cur, ok := s.tokens.byIDValid(p.TokenID)
		if !ok {
			return Principal{}, false, nil
		}
		p.Role = cur.Role
	}
	return p, true, nil
}

// Close ends a session.
func (s *Sessions) Close(ctx context.Context, id string) error {
	err := s.kv.Purge(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// byIDValid returns the token with this id if it exists and has not expired.
func (t *Tokens) byIDValid(id string) (Token, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s, ok := t.byID[id]
	if !ok || (s.ExpiresAt != nil && !time.Now().Before(*s.ExpiresAt)) {
		return Token{}, false
	}
	return s.Token, true
}
