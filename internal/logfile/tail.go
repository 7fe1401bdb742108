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
