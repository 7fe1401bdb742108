//go:build linux

package proc

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// One goroutine counts the tasks (processes and their threads, as
// RLIMIT_NPROC counts them) of every process group with a process limit,
// and calls a group's hit once when it reaches it. The kernel's own limit
// counts per user, not per agent, and not at all for root.
var watcher struct {
	mu     sync.Mutex
	groups map[int]*watchedGroup
	// version changes with every group added.
	version uint64
	quit    chan struct{}
	done    chan struct{}
}

type watchedGroup struct {
	limit int64
	hit   func()
}

// watchInterval is how often the groups are counted.
const watchInterval = 250 * time.Millisecond

// watchGroup watches process group pgid until the returned stop is called.
func watchGroup(pgid int, limit int64, hit func()) (stop func()) {
	w := &watcher
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.groups == nil {
		w.groups = map[int]*watchedGroup{}
	}
	g := &watchedGroup{limit: limit, hit: hit}
	w.groups[pgid] = g
	w.version++
	if w.quit == nil {
		w.quit, w.done = make(chan struct{}), make(chan struct{})
		go countGroups(w.quit, w.done)
	}
	return func() {
		w.mu.Lock()
		if w.groups[pgid] == g {
			delete(w.groups, pgid)
		}
		var done chan struct{}
		if len(w.groups) == 0 && w.quit != nil {
			close(w.quit)
			done, w.quit, w.done = w.done, nil, nil
		}
		w.mu.Unlock()
		if done != nil {
			<-done
		}
	}
}

func countGroups(quit, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	var c counting
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		watchTicks.Add(1)
		if !c.due() {
			continue
		}
		counts := taskCounts()
		var hits []func()
		watcher.mu.Lock()
		headroom := int64(-1)
		for pgid, g := range watcher.groups {
			if counts[pgid] >= g.limit {
				hits = append(hits, g.hit)
				delete(watcher.groups, pgid)
			} else if left := g.limit - counts[pgid]; headroom < 0 || left < headroom {
				headroom = left
			}
		}
		c.scanned(headroom)
		watcher.mu.Unlock()
		for _, h := range hits {
			h()
		}
	}
}

// counting decides when the groups must be counted again. Counting reads
// every /proc/PID/stat (4,400 reads a second with 1,000 agents); a
// group's count grows by the tasks created since, and the kernel counts
// every task it creates (processes and threads, "processes" in
// /proc/stat). So until as many tasks have been created as the group
// nearest its limit has left, the count is not needed; a group added since
// is counted at once. A process can also move into a group with setpgid,
// without a fork: that is seen at the next count, as a process that moved
// out of its group to escape the count never is; the limit per agent that
// no process can leave is a cgroup's, which oxios does not manage.
type counting struct {
	forksAt  uint64 // tasks created by the last count
	headroom int64  // the least any group had left then; -1: none
	version  uint64 // watcher.version at the last count
	counted  bool
}

func (c *counting) due() bool {
	watcher.mu.Lock()
	v := watcher.version
	watcher.mu.Unlock()
	if v == c.version && c.counted && c.headroom < 0 {
		return false // every group was hit: none is left to count
	}
	f, err := forks()
	if !c.counted || v != c.version || err != nil || c.headroom < 0 || f-c.forksAt >= uint64(c.headroom) {
		c.forksAt, c.version, c.counted = f, v, true
		watchScans.Add(1)
		return true
	}
	return false
}

// scanned notes the headroom of the count just made (the caller holds
// watcher.mu).
func (c *counting) scanned(headroom int64) { c.headroom = headroom }

// watchTicks and watchScans count the ticks and the counts made, for
// tests.
var watchTicks, watchScans atomic.Int64

// forks is the number of tasks the kernel has created since boot.
func forks() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if n, ok := strings.CutPrefix(l, "processes "); ok {
			return strconv.ParseUint(strings.TrimSpace(n), 10, 64)
		}
	}
	return 0, errors.New("/proc/stat has no processes line")
}

// taskCounts counts the tasks of every process group.
func taskCounts() map[int]int64 {
	counts := map[int]int64{}
	d, err := os.Open("/proc")
	if err != nil {
		return counts
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[2] is field 5 (pgrp), f[17] field 20 (num_threads).
		if len(f) < 18 || f[0] == "Z" {
			continue
		}
		pgid, err1 := strconv.Atoi(f[2])
		threads, err2 := strconv.ParseInt(f[17], 10, 64)
		if err1 == nil && err2 == nil {
			counts[pgid] += threads
		}
	}
	return counts
}
