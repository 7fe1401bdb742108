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
	"strings"
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
	// TokenID is empty for the admin token of this daemon's own
	// secrets/admin.token (another node's is "admin.NODE").
	TokenID string
}

// Token is an API token as listed: never its secret.
type Token = oxios.Token

// stored is a token as kept in the bucket: with the hash of its secret.
type stored struct {
	Token
	Hash string `json:"hash"`
	// Revoked marks a node's admin token that was revoked: it is kept, so
	// that its node, started again with the same secrets/admin.token, does
	// not bring it back (a new token is made by deleting that file).
	Revoked bool   `json:"revoked,omitempty"`
	rev     uint64 // the bucket revision it was read at
}

// nodeAdminKey is the key of node's admin token in the bucket; its name is
// "admin@NODE".
func nodeAdminKey(node string) string { return "admin." + node }

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
	kv  jetstream.KeyValue
	log *slog.Logger
	// self is the key of this node's own admin token.
	self string

	mu     sync.RWMutex
	byID   map[string]*stored
	byHash map[string]*stored
	used   map[string]time.Time // last use not yet written
	gone   map[string]bool      // revoked here: a late watch update must not bring it back

	stop chan struct{}
	done chan struct{}
}

// OpenTokens opens the tokens bucket, with this node's admin token (the
// hash of secrets/admin.token) in it as "admin@NODE", so that it works on
// every node that shares the bucket, and a revoke on one takes effect on
// all.
func OpenTokens(ctx context.Context, js jetstream.JetStream, admin Hash, node string, replicas int, log *slog.Logger) (*Tokens, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: TokensBucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", TokensBucket, err)
	}
	t := &Tokens{kv: kv, log: log, self: nodeAdminKey(node), byID: map[string]*stored{}, byHash: map[string]*stored{},
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
	if err := t.registerAdmin(ctx, admin, node); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// registerAdmin puts node's admin token in the bucket, unless it is there
// already or was revoked (then it works nowhere, this node included).
func (t *Tokens) registerAdmin(ctx context.Context, admin Hash, node string) error {
	key, hash := t.self, hex.EncodeToString(admin[:])
	e, err := t.kv.Get(ctx, key)
	var rev uint64
	switch {
	case err == nil:
		var old stored
		if json.Unmarshal(e.Value(), &old) == nil && old.Hash == hash {
			if old.Revoked && t.log != nil {
				t.log.Warn("this node's admin token was revoked: it works on no node; delete secrets/admin.token and restart to make a new one", "token", old.Name)
			}
			return nil
		}
		rev = e.Revision() // a new secrets/admin.token: replace the old one
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("read this node's admin token: %w", err)
	}
	s := stored{Token: Token{ID: key, Name: "admin@" + node, Role: Admin, CreatedAt: time.Now().UTC()}, Hash: hash}
	b, _ := json.Marshal(s)
	if rev == 0 {
		rev, err = t.kv.Create(ctx, key, b)
	} else {
		rev, err = t.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		return fmt.Errorf("store this node's admin token: %w", err)
	}
	s.rev = rev
	t.mu.Lock()
	t.drop(key)
	t.byID[key], t.byHash[hash] = &s, &s
	t.mu.Unlock()
	return nil
}

// drop forgets the token of key. The caller holds t.mu.
func (t *Tokens) drop(key string) {
	if old, ok := t.byID[key]; ok {
		delete(t.byHash, old.Hash)
		delete(t.byID, key)
	}
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
	t.drop(e.Key())
	if e.Operation() != jetstream.KeyValuePut || t.gone[e.Key()] {
		return
	}
	var s stored
	if json.Unmarshal(e.Value(), &s) != nil || s.Revoked {
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
	if s.ID == t.self {
		return Principal{Name: s.Name, Role: s.Role}, true // this daemon's own secrets/admin.token
	}
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
	if found.ID == nodeAdminKey(strings.TrimPrefix(found.Name, "admin@")) {
		// Kept, revoked, so that its node does not bring it back.
		gone := *found
		gone.Revoked = true
		b, _ := json.Marshal(gone)
		if _, err := t.kv.Update(ctx, found.ID, b, found.rev); err != nil {
			return Token{}, err
		}
	} else if err := t.kv.Purge(ctx, found.ID); err != nil {
		return Token{}, err
	}
	t.mu.Lock()
	t.drop(found.ID)
	delete(t.used, found.ID)
	if !strings.HasPrefix(found.Name, "admin@") {
		// Purged: a late update of the watch must not bring it back. A
		// node's admin token is kept revoked instead, and its key may hold
		// that node's next admin token.
		t.gone[found.ID] = true
	}
	t.mu.Unlock()
	return found.Token, nil
}
