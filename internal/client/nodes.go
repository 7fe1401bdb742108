package client

import (
	"context"
	"net/http"

	"github.com/oxios/oxios/internal/oxios"
)

// Nodes lists the nodes of the cluster, as the answering node sees them.
func (c *Client) Nodes(ctx context.Context) (oxios.NodeList, error) {
	var out oxios.NodeList
	err := c.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &out)
	return out, err
}
