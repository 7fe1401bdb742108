package logfile

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"
)

// Tail returns the last n lines of the file at path. A missing file has no lines.
func Tail(path string, n int) ([]string, error) {
	return TailFrom(path, 0, n)
}

// TailFrom returns the last n lines among those written at or after byte
// offset from.
func TailFrom(path string, from int64, n int) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end := fi.Size()
	if from > end {
		from = 0 // the file was rotated or truncated since
	}
	// Read backwards in chunks until we have n+1 newlines or reach from.
	const chunk = 64 << 10
	var buf []byte
	pos := end
	for pos > from && bytes.Count(buf, []byte{'\n'}) <= n {
		size := int64(chunk)
		if pos-from < size {
			size = pos - from
		}
		pos -= size
		b := make([]byte, size)
		if _, err := f.ReadAt(b, pos); err != nil && err != io.EOF {
			return nil, err
		}
		buf = append(b, buf...)
	}
	text := strings.TrimRight(string(buf), "\n")
	if text == "" {
		return nil, nil
	}
	lines := strings.Split(text, "\n")
	if pos > from && len(lines) > 0 {
		lines = lines[1:] // the first line may be partial
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// Follow writes to w everything appended to the file at path from byte
// offset from, until ctx is done. It follows the name across rotation: when
// a new file appears at path, the rest of the old one is written first. It
// polls every interval.
func Follow(ctx context.Context, path string, from int64, w io.Writer, interval time.Duration) error {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		if f == nil {
			nf, err := os.Open(path)
			if err == nil {
				f = nf
				if fi, err := f.Stat(); err == nil && from > fi.Size() {
					from = 0
				}
				if _, err := f.Seek(from, io.SeekStart); err != nil {
					return err
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if f != nil {
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
			cur, _ := f.Stat()
			next, err := os.Stat(path)
			switch {
			case err == nil && cur != nil && !os.SameFile(cur, next):
				// Rotated: drain what is left of the old file, then switch.
				if _, err := io.Copy(w, f); err != nil {
					return err
				}
				f.Close()
				f, from = nil, 0
				continue
			case cur != nil:
				if off, _ := f.Seek(0, io.SeekCurrent); off > cur.Size() {
					f.Seek(0, io.SeekStart) // truncated in place
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// Cursor is a place in a rotated log: the file (its inode) and the offset
// in it. The zero Cursor is the start of the current file.
type Cursor struct {
	Ino uint64 `json:"ino"`
	Off int64  `json:"off"`
}

// ReadAt reads at most max bytes of the log at path from c, and returns
// them with the cursor after them. When the file c names has been rotated
// (to path.1), the rest of it is read first, then the new file from its
// start, so nothing written across a rotation is lost. A cursor past the
// end of its file (truncated) starts the file again.
func ReadAt(path string, c Cursor, max int) ([]byte, Cursor, error) {
	cur, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, c, nil
	}
	if err != nil {
		return nil, c, err
	}
	defer cur.Close()
	curIno := inode(cur)
	f := cur
	if c.Ino != 0 && c.Ino != curIno {
		if old, err := os.Open(path + ".1"); err == nil {
			defer old.Close()
			if inode(old) == c.Ino {
				f = old
			}
		}
		if f == cur { // the old file is gone: the current one from its start
			c = Cursor{Ino: curIno}
		}
	}
	c.Ino = inode(f)
	if fi, err := f.Stat(); err == nil && c.Off > fi.Size() {
		c.Off = 0
	}
	buf := make([]byte, max)
	n, err := f.ReadAt(buf, c.Off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, c, err
	}
	c.Off += int64(n)
	if n == 0 && f != cur { // the rotated file is drained: go on in the new one
		return ReadAt(path, Cursor{Ino: curIno}, max)
	}
	return buf[:n], c, nil
}

// End is the cursor at the end of the log at path (the zero Cursor when
// there is none yet).
func End(path string) Cursor {
	f, err := os.Open(path)
	if err != nil {
		return Cursor{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Cursor{}
	}
	return Cursor{Ino: inode(f), Off: fi.Size()}
}
