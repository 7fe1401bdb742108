package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/oxios/oxios/internal/oxios"
)

// Placement: a spawn on any node of a cluster runs on the node with the
// most free room (its scheduler's limit less its live agents, then the
// fewest live agents), among the live nodes that are not drained and
// match the spec's placement. The counts come from the agent index every
// node keeps (remote.go), which this node updates at once for the agents
// it places, so a burst of spawns spreads without waiting for heartbeats.
// A spawn placed on another node is forwarded to it, which checks and
// stores it as its own.

// Placement is the spec vocabulary for where an agent runs.
type Placement = oxios.Placement

// candidate is a node that may run an agent, with its room.
type candidate struct {
	name  string
	free  int // slots free: its limit less its live agents
	limit int
	live  int
	group string // its value of the spread key
}

// place chooses the node that runs spec, never exclude (a node being
// drained or lost), and says why. extra counts agents already given to
// nodes but not yet in the index (failover's plan). A placement no live
// node matches is an *InvalidError naming the field.
func (s *Supervisor) place(spec Spec, exclude string, extra map[string]int) (node, why string, err error) {
	if s.o.Nodes == nil {
		return s.o.Node, "", nil
	}
	p := spec.Placement
	if p == nil {
		if spec.Parent != "" && exclude == "" {
			return s.o.Node, "a sub-agent runs on its parent's node", nil
		}
		p = &Placement{}
	}
	nodes := s.o.Nodes()
	live, named := s.liveCounts(spec.Name)
	var cands []candidate
	var seen []string
	field := "placement.labels"
	if p.Node != "" {
		field = "placement.node"
	}
	for _, n := range nodes {
		if (p.Node != "" && n.Name != p.Node) || !hasLabels(n.Labels, p.Labels) {
			continue
		}
		state := string(n.State)
		if n.Drained {
			state += ", drained"
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", n.Name, state))
		if n.Name == exclude || n.Drained || n.State != oxios.NodeAlive || (n.Name == s.o.Node && s.fenced.Load()) {
			continue
		}
		own := s.o.Scheduler.Snapshot().Limits.MaxRunning
		limit := n.MaxRunning
		if n.Name == s.o.Node || limit <= 0 {
			// This node's own; or a node whose heartbeat does not say yet
			// (it has just started): taken to be as large as this one.
			limit = own
		}
		if limit <= 0 {
			limit = 1 << 30
		}
		c := candidate{name: n.Name, limit: limit, live: live[n.Name] + extra[n.Name]}
		c.free = limit - c.live
		if p.Spread != "" {
			c.group = n.Labels[p.Spread]
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return "", "", noNode(field, p, seen, exclude)
	}
	groups := map[string]int{}
	if p.Spread != "" {
		for _, n := range nodes {
			groups[n.Labels[p.Spread]] += named[n.Name]
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if p.Spread != "" && groups[a.group] != groups[b.group] {
			return groups[a.group] - groups[b.group]
		}
		if a.free != b.free {
			return b.free - a.free
		}
		if a.live != b.live {
			return a.live - b.live
		}
		if (a.name == s.o.Node) != (b.name == s.o.Node) {
			if a.name == s.o.Node {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	c := cands[0]
	switch {
	case p.Node != "":
		why = "placement.node = " + p.Node
	case p.Spread != "":
		why = fmt.Sprintf("spread over %s: %s=%s runs %d live agents named %q, the fewest", p.Spread, p.Spread, c.group, groups[c.group], spec.Name)
	default:
		why = fmt.Sprintf("most free room: %d of %d slots free", max(c.free, 0), c.limit)
		if c.limit == 1<<30 {
			why = fmt.Sprintf("most free room: %d live agents", c.live)
		}
	}
	if len(p.Labels) > 0 {
		why += "; labels " + formatLabels(p.Labels)
	}
	return c.name, why, nil
}

// noNode says that no node can take an agent now, and which nodes the
// placement matched.
func noNode(field string, p *Placement, seen []string, exclude string) error {
	what := "no node of the cluster"
	switch {
	case p.Node != "":
		what = "node " + p.Node
	case len(p.Labels) > 0:
		what = "no node with labels " + formatLabels(p.Labels)
	}
	if len(seen) == 0 {
		if p.Node != "" {
			return invalid(field, "there is no node %s in the cluster", p.Node)
		}
		return invalid(field, "%s is in the cluster", what)
	}
	msg := "no live node that is not drained matches the placement"
	if exclude != "" {
		msg += " (other than " + exclude + ")"
	}
	return invalid(field, "%s: it matches %s", msg, strings.Join(seen, ", "))
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// liveCounts counts the cluster's live (not ended) agents by node, all of
// them and those named name.
func (s *Supervisor) liveCounts(name string) (all, named map[string]int) {
	all, named = map[string]int{}, map[string]int{}
	s.eachRecord(func(r *Record) {
		if r == nil || r.State.Terminal() {
			return
		}
		all[r.Node]++
		if r.Name == name {
			named[r.Node]++
		}
	})
	return all, named
}

// copySpec is a deep copy of spec, which check may change.
func copySpec(spec Spec) Spec {
	b, err := json.Marshal(spec)
	if err != nil {
		return spec
	}
	var out Spec
	if json.Unmarshal(b, &out) != nil {
		return spec
	}
	return out
}

// spawnOn has node spawn spec (as given, for it to check with its own
// defaults) and takes the record it stored into the index at once, so
// that the next placement counts it.
func (s *Supervisor) spawnOn(ctx context.Context, node string, spec Spec, why string) (Record, error) {
	rp, err := s.forward(ctx, node, request{Op: "spawn", Spec: &spec, Restricted: IsRestricted(ctx), Placed: why}, forwardTimeout)
	if err != nil {
		return Record{}, err
	}
	if rp.Record == nil {
		return Record{}, fmt.Errorf("node %s spawned the agent but did not say its record", node)
	}
	r := *rp.Record
	s.remote.setIfAbsent(r.ID, &r)
	return r, nil
}
