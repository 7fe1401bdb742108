//go:build linux

package proc

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// One goroutine counts the tasks (processes and their threads, as
// RLIMIT_NPROC counts them) of every process group with a process limit,
// and calls a group's hit once when it reaches it. The kernel's own limit
// counts per user, not per agent, and not at all for root.
var watcher struct {
	mu     sync.Mutex
	groups map[int]*watchedGroup
	quit   chan struct{}
	done   chan struct{}
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
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		counts := taskCounts()
		var hits []func()
		watcher.mu.Lock()
		for pgid, g := range watcher.groups {
			if counts[pgid] >= g.limit {
				hits = append(hits, g.hit)
				delete(watcher.groups, pgid)
			}
		}
		watcher.mu.Unlock()
		for _, h := range hits {
			h()
		}
	}
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
