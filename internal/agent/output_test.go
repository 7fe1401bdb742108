package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oxios/oxios/internal/agent/agenttest"
	"github.com/oxios/oxios/internal/supervisor"
)

// A final answer over the backbone's largest message (issue 15.3): the
// record keeps its first 64 KiB, the outputs bucket the whole, and both go
// with the agent.
func TestLargeOutputGoesToTheOutputsBucket(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 10<<20; i++ {
		fmt.Fprintf(&b, "line %07d of a long answer\n", i)
	}
	answer := b.String()
	llm := agenttest.New(t, testKey, agenttest.Reply{Text: answer})
	s := newStack(t, llm, nil)
	r := s.run(supervisor.Spec{Goal: "answer at length", Dir: t.TempDir()})
	if r.State != supervisor.Succeeded || !r.OutputTruncated || r.OutputBytes != int64(len(answer)) || r.Output != answer[:supervisor.OutputPreview] {
		t.Fatalf("record: %s %q, truncated %v, %d of %d bytes", r.State, r.Reason, r.OutputTruncated, len(r.Output), r.OutputBytes)
	}
	ctx := context.Background()
	out, n, err := s.sup.Output(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	out.Close()
	if n != int64(len(answer)) || string(got) != answer {
		t.Fatalf("Output: %d bytes (says %d), want %d", len(got), n, len(answer))
	}
	obs, err := s.js.ObjectStore(ctx, supervisor.OutputsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := obs.GetInfo(ctx, r.ID); err != nil || info.Size != uint64(len(answer)) {
		t.Fatalf("object: %+v %v", info, err)
	}

	// A short answer stays in the record, and makes no object.
	llm.SetScript(agenttest.Reply{Text: "short"})
	short := s.run(supervisor.Spec{Goal: "answer briefly", Dir: t.TempDir()})
	if short.Output != "short" || short.OutputTruncated || short.OutputBytes != 5 {
		t.Fatalf("short record: %q %v %d", short.Output, short.OutputTruncated, short.OutputBytes)
	}
	if _, err := obs.GetInfo(ctx, short.ID); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("an object for a short answer: %v", err)
	}

	if err := s.sup.Delete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(ctx, r.ID); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("the object outlived its agent: %v", err)
	}
}
