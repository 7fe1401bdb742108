package oxios

import (
	"fmt"
	"time"
)

// Role is what a token may do. Higher roles include the lower ones.
type Role int

// Roles, least first.
const (
	Viewer   Role = 1 // read only
	Operator Role = 2 // agents, cron, approvals, state
	Admin    Role = 3 // everything, tokens included
)

var roleNames = map[Role]string{Viewer: "viewer", Operator: "operator", Admin: "admin"}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	*r = v
	return err
}

// ParseRole reads "admin", "operator" or "viewer".
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("must be admin, operator or viewer (got %q)", s)
}

// Token is an API token as listed: never its secret.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// TokenCreated is the answer of POST /api/v1/tokens: the only time the
// secret is shown.
type TokenCreated struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}
