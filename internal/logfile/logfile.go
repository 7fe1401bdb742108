// Package logfile writes log files that rotate by size and keep a bounded
// number of old files: name, name.1 (newest) ... name.N (oldest).
package logfile

import (
	"fmt"
	"os"
	"sync"
)

// File is an io.Writer that appends to a log file and rotates it when a
// write would take it past MaxSize. It is safe for concurrent use.
type File struct {
	path     string
	maxSize  int64
	maxFiles int
	// onRotate is called with the new file after each rotation, under the
	// lock; the daemon uses it to point its stdout and stderr at the new file.
	onRotate func(*os.File) error

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Options configure a File.
type Options struct {
	// MaxSize is the size in bytes at which the file is rotated (> 0).
	MaxSize int64
	// MaxFiles is how many rotated files are kept; 0 keeps none.
	MaxFiles int
	// OnRotate, if set, is called with the newly opened file after a rotation.
	OnRotate func(*os.File) error
}

// Open opens (creating if needed, mode 0600) the log file at path for appending.
func Open(path string, opts Options) (*File, error) {
	if opts.MaxSize <= 0 {
		return nil, fmt.Errorf("logfile: MaxSize must be positive")
	}
	l := &File{path: path, maxSize: opts.MaxSize, maxFiles: opts.MaxFiles, onRotate: opts.OnRotate}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first if p would take the file past MaxSize. A
// single write larger than MaxSize goes whole into a fresh file.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	if l.size > 0 && l.size+int64(len(p)) > l.maxSize {
		if err := l.rotate(); err != nil {
			// Keep logging into the old file rather than lose the line.
			fmt.Fprintf(l.f, "logfile: rotate %s: %v\n", l.path, err)
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	if l.maxFiles == 0 {
		if err := os.Remove(l.path); err != nil && !os.IsNotExist(err) {
			return l.reopenAfter(err)
		}
	} else {
		os.Remove(fmt.Sprintf("%s.%d", l.path, l.maxFiles))
		for i := l.maxFiles - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1))
		}
		if err := os.Rename(l.path, l.path+".1"); err != nil && !os.IsNotExist(err) {
			return l.reopenAfter(err)
		}
	}
	if err := l.open(); err != nil {
		return err
	}
	if l.onRotate != nil {
		return l.onRotate(l.f)
	}
	return nil
}

func (l *File) reopenAfter(err error) error {
	if oerr := l.open(); oerr != nil {
		return fmt.Errorf("%w; reopen: %v", err, oerr)
	}
	return err
}

// Close closes the file; later writes fail with os.ErrClosed.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
