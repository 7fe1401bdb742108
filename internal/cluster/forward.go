package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/oxios"
)

// Subject is where node answers the requests other nodes forward to it
// about what it owns ("agent", "cron").
func Subject(node, what string) string { return "oxios.node." + node + "." + what }

// Ask sends req (as JSON) to node's subject for what, and decodes the
// answer into reply. A node that does not answer by ctx's deadline (or
// has no one listening) is oxios.ErrUnreachable, said as who describes it.
func Ask(ctx context.Context, nc *nats.Conn, node, what string, req, reply any, who string) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg, err := nc.RequestWithContext(ctx, Subject(node, what), data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("%s, which does not answer: %w", who, oxios.ErrUnreachable)
		}
		return err
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("node %s answered what this node cannot read: %w", node, err)
	}
	return nil
}

// Follow hands every update of w to apply until ctx ends or w closes,
// then stops w. ready, if not nil, is closed once the values stored when
// the watch began have been applied.
func Follow(ctx context.Context, w jetstream.KeyWatcher, ready chan<- struct{}, apply func(jetstream.KeyValueEntry)) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return
			case e != nil:
				apply(e)
			case ready != nil:
				close(ready)
				ready = nil
			}
		}
	}
}
