package security

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// Role is what a token may do. Higher roles include the lower ones.
type Role = oxios.Role

// Roles, least first.
const (
	Viewer   = oxios.Viewer
	Operator = oxios.Operator
	Admin    = oxios.Admin
)

// ParseRole reads "admin", "operator" or "viewer".
func ParseRole(s string) (Role, error) { return oxios.ParseRole(s) }

// Principal is who made a request.
type Principal struct {
	Name string
	Role Role
	// TokenID is empty for the admin token of secrets/admin.token.
	TokenID string
}

// Token is an API token as listed: never its secret.
type Token = oxios.Token

// stored is a token as kept in the bucket: with the hash of its secret.
type stored struct {
	Token
	Hash string `json:"hash"`
	rev  uint64 // the bucket revision it was read at
}

// Errors callers test for.
var (
	ErrNoToken = errors.New("no such token")
	ErrExists  = errors.New("a token with this name exists")
)

// InvalidError is bad input; Field names it.
type InvalidError = oxios.InvalidError

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// TokensBucket holds the tokens.
const TokensBucket = "tokens"

// Tokens checks and manages API tokens: the admin token of
// secrets/admin.token and the tokens created through the API, kept as
// hashes in the tokens bucket and in memory (kept current by a watch, so a
// revoke on any node takes effect at once everywhere).
type Tokens struct {
	kv    jetstream.KeyValue
	admin Hash
	log   *slog.Logger

	mu     sync.RWMutex
	byID   map[string]*stored
	byHash map[string]*stored
	used   map[string]time.Time // last use not yet written
	gone   map[string]bool      // revoked here: a late watch update must not bring it back

	stop chan struct{}
	done chan struct{}
}

// OpenTokens opens the tokens bucket; admin is the admin token's hash.
func OpenTokens(ctx context.Context, js jetstream.JetStream, admin Hash, replicas int, log *slog.Logger) (*Tokens, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: TokensBucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", TokensBucket, err)
	}
	t := &Tokens{kv: kv, admin: admin, log: log, byID: map[string]*stored{}, byHash: map[string]*stored{},
		used: map[string]time.Time{}, gone: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, err
	}
	loaded := make(chan struct{})
	go t.follow(w, loaded)
	select {
	case <-loaded:
	case <-ctx.Done():
		t.Close()
		return nil, ctx.Err()
	}
	return t, nil
}

// follow keeps the in-memory tokens current, and writes last-use times in
// batches (every 30 s), not one write per request.
func (t *Tokens) follow(w jetstream.KeyWatcher, loaded chan struct{}) {
	defer close(t.done)
	defer w.Stop()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	first := true
	for {
		select {
		case <-t.stop:
			t.flushUsed()
			return
		case <-tick.C:
			t.flushUsed()
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				if first {
					first = false
					close(loaded)
				}
				continue
			}
			t.apply(e)
		}
	}
}

func (t *Tokens) apply(e jetstream.KeyValueEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byID[e.Key()]; ok {
		delete(t.byHash, old.Hash)
		delete(t.byID, e.Key())
	}
	if e.Operation() != jetstream.KeyValuePut || t.gone[e.Key()] {
		return
	}
	var s stored
	if json.Unmarshal(e.Value(), &s) != nil {
		return
	}
	s.rev = e.Revision()
	t.byID[s.ID], t.byHash[s.Hash] = &s, &s
}

// Close stops the watch, writing pending last-use times.
func (t *Tokens) Close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

// Authenticate returns who presents token, if it is valid now.
func (t *Tokens) Authenticate(token string) (Principal, bool) {
	h := HashToken(token)
	if h.Equal(t.admin) {
		return Principal{Name: "admin", Role: Admin}, true
	}
	key := hex.EncodeToString(h[:])
	t.mu.RLock()
	s, ok := t.byHash[key]
	t.mu.RUnlock()
	// The map finds the entry by the hash of the secret, which tells an
	// attacker nothing; the compare below is constant-time regardless.
	if !ok || subtle.ConstantTimeCompare([]byte(s.Hash), []byte(key)) != 1 {
		return Principal{}, false
	}
	if s.ExpiresAt != nil && !time.Now().Before(*s.ExpiresAt) {
		return Principal{}, false
	}
	t.mu.Lock()
	t.used[s.ID] = time.Now().UTC()
	t.mu.Unlock()
	return Principal{Name: s.Name, Role: s.Role, TokenID: s.ID}, true
}

func (t *Tokens) flushUsed() {
	t.mu.Lock()
	used := t.used
	t.used = map[string]time.Time{}
	var writes []stored
	for id, at := range used {
		if s, ok := t.byID[id]; ok {
			c := *s
			c.LastUsedAt = &at
			writes = append(writes, c)
		}
	}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), oxios.BackboneTimeout)
	defer cancel()
	for _, s := range writes {
		b, _ := json.Marshal(s)
		// Compare-and-set: a token revoked meanwhile must not come back.
		if _, err := t.kv.Update(ctx, s.ID, b, s.rev); err != nil && t.log != nil {
			t.log.Debug("record token use", "token", s.Name, "err", err)
		}
	}
}

// Create makes a token and returns its secret, which is shown only now.
func (t *Tokens) Create(ctx context.Context, name string, role Role, expiresAt *time.Time) (string, Token, error) {
	if !tokenName.MatchString(name) || name == "admin" {
		return "", Token{}, &InvalidError{Field: "name", Msg: fmt.Sprintf("must be 1 to 64 letters, digits, '.', '_' or '-', and not \"admin\" (got %q)", name)}
	}
	if role < Viewer || role > Admin {
		return "", Token{}, &InvalidError{Field: "role", Msg: "must be admin, operator or viewer"}
	}
	if expiresAt != nil && !expiresAt.After(time.Now()) {
		return "", Token{}, &InvalidError{Field: "expires_at", Msg: fmt.Sprintf("must be in the future (got %s)", expiresAt.UTC().Format(time.RFC3339))}
	}
	t.mu.RLock()
	for _, s := range t.byID {
		if s.Name == name {
			t.mu.RUnlock()
			return "", Token{}, fmt.Errorf("token %q: %w", name, ErrExists)
		}
	}
	t.mu.RUnlock()
	secret, err := NewToken()
	if err != nil {
		return "", Token{}, err
	}
	id, _ := uuid.NewV7()
	h := HashToken(secret)
	s := stored{Token: Token{ID: id.String(), Name: name, Role: role, CreatedAt: time.Now().UTC(), ExpiresAt: expiresAt}, Hash: hex.EncodeToString(h[:])}
	b, _ := json.Marshal(s)
	rev, err := t.kv.Create(ctx, s.ID, b)
	if err != nil {
		return "", Token{}, err
	}
	s.rev = rev
	t.mu.Lock()
	t.byID[s.ID], t.byHash[s.Hash] = &s, &s
	t.mu.Unlock()
	return secret, s.Token, nil
}

// List returns the tokens, oldest first.
func (t *Tokens) List() []Token {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Token, 0, len(t.byID))
	for _, s := range t.byID {
		tok := s.Token
		if at, ok := t.used[s.ID]; ok {
			tok.LastUsedAt = &at
		}
		out = append(out, tok)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Revoke deletes the token with this id or name; it stops working at once.
func (t *Tokens) Revoke(ctx context.Context, idOrName string) (Token, error) {
	t.mu.RLock()
	var found *stored
	for _, s := range t.byID {
		if s.ID == idOrName || s.Name == idOrName {
			found = s
		}
	}
	t.mu.RUnlock()
	if found == nil {
		return Token{}, fmt.Errorf("token %q: %w", idOrName, ErrNoToken)
	}
	if err := t.kv.Purge(ctx, found.ID); err != nil {
		return Token{}, err
	}
	t.mu.Lock()
	delete(t.byID, found.ID)
	delete(t.byHash, found.Hash)
	delete(t.used, found.ID)
	t.gone[found.ID] = true
	t.mu.Unlock()
	return found.Token, nil
}
