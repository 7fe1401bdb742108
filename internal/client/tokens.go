package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/oxios/oxios/internal/oxios"
)

// CreateToken makes a token; expiresIn is a duration such as "720h" ("" for
// none). The secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, name, role, expiresIn string) (oxios.TokenCreated, error) {
	var out oxios.TokenCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "role": role, "expires_in": expiresIn}, &out)
	return out, err
}

// Tokens lists the tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]oxios.Token, error) {
	var out struct {
		Items []oxios.Token `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, &out)
	return out.Items, err
}

// RevokeToken revokes the token with this id or name.
func (c *Client) RevokeToken(ctx context.Context, idOrName string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(idOrName), nil, nil)
}
