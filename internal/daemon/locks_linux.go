package daemon

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockHolder returns the PID holding an exclusive flock on the file with
// device dev and inode ino, from /proc/locks.
func lockHolder(dev, ino uint64) (pid int, known bool) {
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 4242 00:2e:1234567 0 EOF
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[3] != "WRITE" {
			continue // also skips blocked waiters ("1: -> FLOCK ...")
		}
		if fields[5] != want {
			continue
		}
		p, err := strconv.Atoi(fields[4])
		if err != nil {
			return 0, false
		}
		return p, true
	}
	return 0, false
}
