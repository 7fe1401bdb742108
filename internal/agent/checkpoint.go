package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/supervisor"
)

// CheckpointsBucket holds the conversation of each running llm agent.
const CheckpointsBucket = "checkpoints"

// Checkpoints keep each running llm agent's conversation, written at every
// step, so that a run cut by a daemon restart goes on where it was.
type Checkpoints struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

// checkpoint is a run's state after the model's latest answer: the tool
// calls of the last assistant message may not have run yet (on resume
// they run, again if need be).
type checkpoint struct {
	Messages []Message           `json:"messages"`
	Progress supervisor.Progress `json:"progress"`
	Cost     float64             `json:"cost"`
}

// OpenCheckpoints opens the checkpoints bucket.
func OpenCheckpoints(ctx context.Context, js jetstream.JetStream, replicas int) (*Checkpoints, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: CheckpointsBucket, History: 1,
		Storage: jetstream.FileStorage, Replicas: replicas, MaxValueSize: maxCheckpoint})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", CheckpointsBucket, err)
	}
	return &Checkpoints{kv: kv, js: js}, nil
}

// maxCheckpoint is the largest checkpoint: under the backbone's largest
// message, with room for the headers.
const maxCheckpoint = backbone.MaxPayload - 64<<10

func (c *Checkpoints) load(ctx context.Context, id string) (checkpoint, bool) {
	var cp checkpoint
	e, err := c.kv.Get(ctx, id)
	if err != nil || json.Unmarshal(e.Value(), &cp) != nil {
		return cp, false
	}
	return cp, len(cp.Messages) > 0
}

// saveAsync hands a checkpoint to the bucket without waiting; the returned
// func waits for it to be stored. If it was not, the older checkpoint is
// dropped (a run must not resume from a step it has gone past). A run does
// not wait on its checkpoint between steps: a crash before it is stored
// resumes from the one before, which is what "at least once" allows.
func (c *Checkpoints) saveAsync(id string, cp checkpoint) func() error {
	b, err := json.Marshal(cp)
	if err == nil && len(b) > maxCheckpoint {
		err = fmt.Errorf("the conversation (%d bytes) is too large to checkpoint (at most %d)", len(b), maxCheckpoint)
	}
	var fut jetstream.PubAckFuture
	if err == nil {
		// The bucket's own subject: a put, pipelined.
		fut, err = c.js.PublishAsync("$KV."+CheckpointsBucket+"."+id, b)
	}
	return func() error {
		if err == nil {
			select {
			case <-fut.Ok():
				return nil
			case err = <-fut.Err():
			case <-time.After(oxios.BackboneTimeout):
				err = errors.New("checkpoint not confirmed")
			}
		}
		c.Delete(context.Background(), id)
		return err
	}
}

// Delete drops an agent's checkpoint (its run has ended).
func (c *Checkpoints) Delete(ctx context.Context, id string) error {
	err := c.kv.Purge(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}
