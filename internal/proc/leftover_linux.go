package proc

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stat is what oxios reads of /proc/<pid>/stat.
type stat struct {
	pid, pgid int
	start     uint64
	zombie    bool
}

func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 {
		return stat{}, false
	}
	pgid, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return stat{}, false
	}
	return stat{pid: pid, pgid: pgid, start: start, zombie: f[0] == "Z"}, true
}

// Leftovers returns the live processes of the group that pid led when it
// was the process with startTime. If that leader is still alive, it is the
// leader and every member of its group started no earlier. If the leader is
// gone, the group id could since have been taken by an unrelated group, so
// only members that carry tag (an environment entry such as
// "OXIOS_AGENT_ID=...", inherited from the leader) are returned. A group
// whose id now belongs to another process yields nothing.
func Leftovers(pid int, startTime uint64, tag string) []Tagged {
	if pid <= 1 || startTime == 0 {
		return nil
	}
	st, ok := readStat(pid)
	if ok && st.start != startTime {
		return nil // the PID was reused: not our process, not our group
	}
	leaderAlive := ok && !st.zombie
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Tagged
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(n)
		if !ok || st.pgid != pid || st.start < startTime || st.zombie {
			continue
		}
		if leaderAlive || (tag != "" && hasEnv(n, tag)) {
			out = append(out, Tagged{PID: n, Start: st.start})
		}
	}
	return out
}

// hasEnv reports whether process pid's environment holds the entry kv.
func hasEnv(pid int, kv string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, entry := range bytes.Split(b, []byte{0}) {
		if string(entry) == kv {
			return true
		}
	}
	return false
}

// Terminate sends sig to each of procs that is still the process it was
// (same PID and start time), then SIGKILL to those alive after grace. It
// returns how many it signalled.
func Terminate(procs []Tagged, sig syscall.Signal, grace time.Duration) int {
	alive := func() []Tagged {
		var live []Tagged
		for _, p := range procs {
			if st, ok := readStat(p.PID); ok && st.start == p.Start && !st.zombie {
				live = append(live, p)
			}
		}
		return live
	}
	procs = alive()
	for _, p := range procs {
		syscall.Kill(p.PID, sig)
	}
	deadline := time.Now().Add(grace)
	for len(alive()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range alive() {
		syscall.Kill(p.PID, syscall.SIGKILL)
	}
	return len(procs)
}

// Tagged identifies one process: its PID and start time (and, from
// ByEnvWith, the value of a second variable of its environment).
type Tagged struct {
	PID   int
	Start uint64
	Also  string
}

// ByEnv returns the live processes whose environment sets key, by the
// value they have for it, with their start times. It finds processes whose
// PID was never recorded (started just before the daemon died); only this
// user's processes can be read, which are the only ones the daemon starts.
func ByEnv(key string) map[string][]Tagged { return ByEnvWith(key, "") }

// ByEnvWith is ByEnv, with each process's value of variable also.
func ByEnvWith(key, also string) map[string][]Tagged {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	prefix := []byte(key + "=")
	alsoPrefix := []byte(also + "=")
	out := map[string][]Tagged{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		var value, alsoValue []byte
		found := false
		for _, entry := range bytes.Split(b, []byte{0}) {
			if v, ok := bytes.CutPrefix(entry, prefix); ok {
				value, found = v, true
			} else if v, ok := bytes.CutPrefix(entry, alsoPrefix); ok && also != "" {
				alsoValue = v
			}
		}
		if found {
			if st, ok := readStat(n); ok && !st.zombie {
				out[string(value)] = append(out[string(value)], Tagged{PID: n, Start: st.start, Also: string(alsoValue)})
			}
		}
	}
	return out
}

// KillTagged SIGKILLs the processes started at or after since (a start
// time) whose environment holds tag ("OXIOS_AGENT_ID=<id>"): those of an
// agent (led by pid0) that left its process group (setsid, a double fork)
// and kept its environment. Only PIDs handed out after pid0 are looked at
// (reading every process costs too much at every exit): those above it,
// and, when the PID counter has wrapped since, those up to the last one
// given. A counter that went all the way round past pid0 again hides
// the ones below. It returns how many it killed.
func KillTagged(tag string, pid0 int, since uint64) int {
	entries, err := os.ReadDir("/proc")
	if err != nil || tag == "" {
		return 0
	}
	last := pid0
	if b, err := os.ReadFile("/proc/sys/kernel/ns_last_pid"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	wrapped := last < pid0
	want := []byte(tag)
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || pid <= pid0 && !(wrapped && pid <= last) {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.zombie || st.start < since {
			continue // older than the agent: not its
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, entry := range bytes.Split(b, []byte{0}) {
			if bytes.Equal(entry, want) {
				if cur, ok := readStat(pid); ok && cur.start == st.start {
					syscall.Kill(pid, syscall.SIGKILL)
					n++
				}
				break
			}
		}
	}
	return n
}
