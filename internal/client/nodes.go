package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/oxios/oxios/internal/oxios"
)

// Nodes lists the nodes of the cluster, as the answering node sees them.
func (c *Client) Nodes(ctx context.Context) (oxios.NodeList, error) {
	var out oxios.NodeList
	err := c.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &out)
	return out, err
}

// Drain drains node name (on) or undrains it, and returns the node.
func (c *Client) Drain(ctx context.Context, name string, on bool) (oxios.Node, error) {
	var out oxios.Node
	op := "drain"
	if !on {
		op = "undrain"
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(name)+"/"+op, nil, &out)
	return out, err
}
