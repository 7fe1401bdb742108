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
// was the process with startTime: the leader, if it still is that process,
// and every member of its group started no earlier. A group whose id now
// belongs to another process is not ours, and yields nothing.
func Leftovers(pid int, startTime uint64) []int {
	if pid <= 1 || startTime == 0 {
		return nil
	}
	if st, ok := readStat(pid); ok && st.start != startTime {
		return nil // the PID was reused: not our process, not our group
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(n); ok && st.pgid == pid && st.start >= startTime && !st.zombie {
			out = append(out, n)
		}
	}
	return out
}

// Terminate ends what Leftovers finds for pid and startTime: sig to each
// process, then SIGKILL to those still alive after grace. Every signal goes
// to a process just verified by PID and start time, never by PID alone. It
// returns how many processes it found.
func Terminate(pid int, startTime uint64, sig syscall.Signal, grace time.Duration) int {
	found := Leftovers(pid, startTime)
	if len(found) == 0 {
		return 0
	}
	starts := map[int]uint64{}
	for _, p := range found {
		if st, ok := readStat(p); ok {
			starts[p] = st.start
			syscall.Kill(p, sig)
		}
	}
	alive := func() []int {
		var live []int
		for p, start := range starts {
			if st, ok := readStat(p); ok && st.start == start && !st.zombie {
				live = append(live, p)
			}
		}
		return live
	}
	deadline := time.Now().Add(grace)
	for len(alive()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range alive() {
		syscall.Kill(p, syscall.SIGKILL)
	}
	return len(found)
}

// Tagged is a process found by ByEnv.
type Tagged struct {
	PID   int
	Start uint64
}

// ByEnv returns the live processes whose environment sets key, by the
// value they have for it, with their start times. It finds processes whose
// PID was never recorded (started just before the daemon died); only this
// user's processes can be read, which are the only ones the daemon starts.
func ByEnv(key string) map[string][]Tagged {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	prefix := []byte(key + "=")
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
		for _, entry := range bytes.Split(b, []byte{0}) {
			if v, ok := bytes.CutPrefix(entry, prefix); ok {
				if st, ok := readStat(n); ok && !st.zombie {
					out[string(v)] = append(out[string(v)], Tagged{PID: n, Start: st.start})
				}
				break
			}
		}
	}
	return out
}
