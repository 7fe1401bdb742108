package logfile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRotateKeepsBoundedFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	rotations := 0
	l, err := Open(path, Options{MaxSize: 100, MaxFiles: 3, OnRotate: func(*os.File) error { rotations++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("a", 39) + "\n" // 40 bytes: two fit in 100
	for i := 0; i < 20; i++ {
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := "x.log x.log.1 x.log.2 x.log.3"; strings.Join(names, " ") != want {
		t.Fatalf("files %v, want %s", names, want)
	}
	for _, n := range names {
		fi, _ := os.Stat(filepath.Join(dir, n))
		if fi.Size() > 100 {
			t.Errorf("%s is %d bytes, over the limit", n, fi.Size())
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", n, fi.Mode().Perm())
		}
	}
	if rotations != 9 {
		t.Errorf("OnRotate called %d times, want 9", rotations)
	}
}

func TestRotateWithoutKeeping(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	l, _ := Open(path, Options{MaxSize: 10, MaxFiles: 0})
	l.Write([]byte("123456789\n"))
	l.Write([]byte("abc\n"))
	l.Close()
	b, _ := os.ReadFile(path)
	if string(b) != "abc\n" {
		t.Fatalf("got %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d files, want 1", len(entries))
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	os.WriteFile(path, []byte("old\n"), 0o600)
	l, _ := Open(path, Options{MaxSize: 1 << 20})
	l.Write([]byte("new\n"))
	l.Close()
	if b, _ := os.ReadFile(path); string(b) != "old\nnew\n" {
		t.Fatalf("got %q", b)
	}
	if _, err := l.Write([]byte("late")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

func TestConcurrentWritesKeepLinesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	l, _ := Open(path, Options{MaxSize: 4096, MaxFiles: 100})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				fmt.Fprintf(l, "g%d line %03d\n", g, i)
			}
		}()
	}
	wg.Wait()
	l.Close()
	total := 0
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		for _, ln := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if !strings.HasPrefix(ln, "g") || !strings.Contains(ln, " line ") || len(ln) != len("g0 line 000") {
				t.Fatalf("torn line %q in %s", ln, e.Name())
			}
			total++
		}
	}
	if total != 1600 {
		t.Fatalf("%d lines, want 1600", total)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if lines, err := Tail(path, 5); err != nil || lines != nil {
		t.Fatalf("missing file: %v %v", lines, err)
	}
	var b strings.Builder
	for i := 1; i <= 10000; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	os.WriteFile(path, []byte(b.String()), 0o600)
	lines, err := Tail(path, 3)
	if err != nil || strings.Join(lines, ",") != "line 9998,line 9999,line 10000" {
		t.Fatalf("Tail: %v %v", lines, err)
	}
	all, _ := Tail(path, 20000)
	if len(all) != 10000 || all[0] != "line 1" {
		t.Fatalf("Tail all: %d lines, first %q", len(all), all[0])
	}
	fi, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("fresh 1\nfresh 2\n")
	f.Close()
	lines, _ = TailFrom(path, fi.Size(), 30)
	if strings.Join(lines, ",") != "fresh 1,fresh 2" {
		t.Fatalf("TailFrom: %v", lines)
	}
}

// syncBuffer is a bytes.Buffer safe to read while Follow writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	l, _ := Open(path, Options{MaxSize: 64, MaxFiles: 2})
	defer l.Close()
	l.Write([]byte("before follow\n"))
	fi, _ := os.Stat(path)

	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, fi.Size(), &out, 5*time.Millisecond) }()

	// Each line is written once the previous one has been followed, so
	// every rotation (one each 3 lines) happens while Follow is watching.
	var want strings.Builder
	for i := 0; i < 30; i++ {
		line := fmt.Sprintf("followed line %02d\n", i) // 18 bytes
		l.Write([]byte(line))
		want.WriteString(line)
		deadline := time.Now().Add(5 * time.Second)
		for out.String() != want.String() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.String() != want.String() {
		t.Fatalf("followed:\n%s\nwant:\n%s", out.String(), want.String())
	}
}

// ReadAt, called again from each cursor it returns (as a remote reader
// does), reads every line once across rotations, in small and large reads.
func TestReadAtAcrossRotation(t *testing.T) {
	for _, max := range []int{7, 4096} {
		path := filepath.Join(t.TempDir(), "x.log")
		l, _ := Open(path, Options{MaxSize: 64, MaxFiles: 2})
		var got, want strings.Builder
		var c Cursor
		for i := 0; i < 30; i++ {
			line := fmt.Sprintf("read line %02d\n", i)
			l.Write([]byte(line))
			want.WriteString(line)
			for {
				b, next, err := ReadAt(path, c, max)
				if err != nil {
					t.Fatal(err)
				}
				c = next
				if len(b) == 0 {
					break
				}
				got.Write(b)
			}
		}
		l.Close()
		if got.String() != want.String() {
			t.Fatalf("max %d: read:\n%s\nwant:\n%s", max, got.String(), want.String())
		}
	}
}
