// Package backup takes and restores backups: a tar.gz of every JetStream
// stream (the event log, the audit trail, every bucket) as the server's own
// consistent snapshots, plus the config file and the secrets. A manifest,
// written last, names every file with its SHA-256, so that a restore checks
// the whole archive before it touches anything.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/nats-io/nats.go"
)

// Format names the archives this package writes.
const Format = "oxios-backup"

// Version of the archive layout.
const Version = 1

// ManifestName is the last entry of an archive.
const ManifestName = "manifest.json"

// Manifest describes an archive.
type Manifest struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Node    string    `json:"node"`
	Oxios   string    `json:"oxios"`
	Streams []Stream  `json:"streams"`
	Files   []File    `json:"files"`
}

// Stream is one stream's snapshot in an archive.
type Stream struct {
	Name string `json:"name"`
	// Meta is the stream's configuration and state as the server gave
	// them with the snapshot (what a restore sends back).
	Meta     json.RawMessage `json:"meta"`
	Messages uint64          `json:"messages"`
	LastSeq  uint64          `json:"last_seq"`
}

// File is an entry of an archive with its digest.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func snapshotPath(stream string) string { return "streams/" + stream + ".tar.s2" }

// snapshotMeta is the part of the server's snapshot answer a restore needs.
type snapshotMeta struct {
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
	Error  *struct {
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// Snapshot writes the server's snapshot of one stream (a consistent
// point-in-time copy of its store) to w, acknowledging each chunk as the
// protocol asks, and returns the stream's configuration and state.
func Snapshot(ctx context.Context, nc *nats.Conn, stream string, w io.Writer) (Stream, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return Stream{}, err
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "no_consumers": true})
	rctx, cancel := context.WithTimeout(ctx, oxios.BackboneTimeout)
	resp, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.SNAPSHOT."+stream, req)
	cancel()
	if err != nil {
		return Stream{}, fmt.Errorf("snapshot %s: %w", stream, err)
	}
	var meta snapshotMeta
	if err := json.Unmarshal(resp.Data, &meta); err != nil {
		return Stream{}, fmt.Errorf("snapshot %s: %w", stream, err)
	}
	if meta.Error != nil {
		return Stream{}, fmt.Errorf("snapshot %s: %s", stream, meta.Error.Description)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return Stream{}, fmt.Errorf("snapshot %s: %w", stream, err)
		}
		if len(m.Data) == 0 {
			// The end (chunks are never empty): 204, or why it failed.
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return Stream{}, fmt.Errorf("snapshot %s failed: %s %s", stream, st, m.Header.Get("Description"))
			}
			break
		}
		if _, err := w.Write(m.Data); err != nil {
			return Stream{}, err
		}
		if m.Reply != "" {
			m.Respond(nil) // flow control: the next chunk may come
		}
	}
	var st struct {
		Msgs    uint64 `json:"messages"`
		LastSeq uint64 `json:"last_seq"`
	}
	json.Unmarshal(meta.State, &st)
	b, _ := json.Marshal(map[string]json.RawMessage{"config": meta.Config, "state": meta.State})
	return Stream{Name: stream, Meta: b, Messages: st.Msgs, LastSeq: st.LastSeq}, nil
}

// Restore recreates a stream (which must not exist) from its snapshot.
func Restore(ctx context.Context, nc *nats.Conn, s Stream, r io.Reader) error {
	rctx, cancel := context.WithTimeout(ctx, oxios.BackboneTimeout)
	resp, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.RESTORE."+s.Name, s.Meta)
	cancel()
	if err != nil {
		return fmt.Errorf("restore %s: %w", s.Name, err)
	}
	var start struct {
		DeliverSubject string `json:"deliver_subject"`
		Error          *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &start); err != nil || start.Error != nil || start.DeliverSubject == "" {
		if start.Error != nil {
			return fmt.Errorf("restore %s: %s", s.Name, start.Error.Description)
		}
		return fmt.Errorf("restore %s: unexpected answer %q", s.Name, resp.Data)
	}
	buf := make([]byte, 128<<10)
	send := func(chunk []byte) ([]byte, error) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		m, err := nc.RequestWithContext(cctx, start.DeliverSubject, chunk)
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			reply, err := send(buf[:n])
			if err != nil {
				return fmt.Errorf("restore %s: %w", s.Name, err)
			}
			if len(reply) > 0 {
				return fmt.Errorf("restore %s: %s", s.Name, apiError(reply))
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	reply, err := send(nil) // the end
	if err != nil {
		return fmt.Errorf("restore %s: %w", s.Name, err)
	}
	if msg := apiError(reply); msg != "" {
		return fmt.Errorf("restore %s: %s", s.Name, msg)
	}
	return nil
}

func apiError(b []byte) string {
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &r) == nil && r.Error != nil {
		return r.Error.Description
	}
	return ""
}

// Writer writes an archive: entries, then the manifest at Close.
type Writer struct {
	gz  *gzip.Writer
	tw  *tar.Writer
	man Manifest
}

// NewWriter starts an archive on w.
func NewWriter(w io.Writer, node, version string) *Writer {
	gz := gzip.NewWriter(w)
	return &Writer{gz: gz, tw: tar.NewWriter(gz),
		man: Manifest{Format: Format, Version: Version, Created: time.Now().UTC(), Node: node, Oxios: version}}
}

// Add writes one entry of size bytes read from r.
func (w *Writer) Add(name string, size int64, mode int64, r io.Reader) error {
	if err := w.tw.WriteHeader(&tar.Header{Name: name, Size: size, Mode: mode, ModTime: w.man.Created, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(w.tw, io.TeeReader(r, h))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: wrote %d of %d bytes", name, n, size)
	}
	w.man.Files = append(w.man.Files, File{Path: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

// AddStream records a stream whose snapshot was added as an entry.
func (w *Writer) AddStream(s Stream) { w.man.Streams = append(w.man.Streams, s) }

// Close writes the manifest and ends the archive.
func (w *Writer) Close() error {
	b, _ := json.MarshalIndent(w.man, "", "  ")
	if err := w.tw.WriteHeader(&tar.Header{Name: ManifestName, Size: int64(len(b)), Mode: 0o600, ModTime: w.man.Created, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := w.tw.Write(b); err != nil {
		return err
	}
	if err := w.tw.Close(); err != nil {
		return err
	}
	return w.gz.Close()
}

// ArchiveError is an archive that cannot be restored: missing, not an
// oxios backup, corrupt, truncated or incomplete (bad input, not a fault).
type ArchiveError struct{ Err error }

func (e *ArchiveError) Error() string { return e.Err.Error() }
func (e *ArchiveError) Unwrap() error { return e.Err }

// Verify reads the whole archive and checks it: a gzip'd tar whose last
// entry is an oxios manifest, every entry listed with the right size and
// SHA-256, every stream's snapshot present. Nothing is extracted. Its
// errors are *ArchiveError.
func Verify(file string) (Manifest, error) {
	m, err := verify(file)
	if err != nil {
		return m, &ArchiveError{err}
	}
	return m, nil
}

func verify(file string) (Manifest, error) {
	f, err := os.Open(file)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s is not an oxios backup (not gzip: %v)", file, err)
	}
	tr := tar.NewReader(gz)
	sums := map[string]File{}
	var man *Manifest
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && first {
			return Manifest{}, fmt.Errorf("%s is not an oxios backup (not a tar.gz archive: %v)", file, err)
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("%s is corrupt or truncated: %v", file, err)
		}
		if hdr.Name == ManifestName {
			var m Manifest
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return Manifest{}, fmt.Errorf("%s is corrupt or truncated: %v", file, err)
			}
			if json.Unmarshal(b, &m) != nil || m.Format != Format {
				return Manifest{}, fmt.Errorf("%s is not an oxios backup (its manifest is not one)", file)
			}
			man = &m
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, tr)
		if err != nil {
			return Manifest{}, fmt.Errorf("%s is corrupt or truncated: %v", file, err)
		}
		sums[hdr.Name] = File{Path: hdr.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return Manifest{}, fmt.Errorf("%s is corrupt or truncated: %v", file, err)
	}
	if man == nil {
		return Manifest{}, fmt.Errorf("%s is not an oxios backup (no %s; a backup that stopped half way has none)", file, ManifestName)
	}
	if man.Version > Version {
		return Manifest{}, fmt.Errorf("%s was written by a newer oxios (backup version %d; this one reads %d)", file, man.Version, Version)
	}
	for _, want := range man.Files {
		got, ok := sums[want.Path]
		if !ok {
			return Manifest{}, fmt.Errorf("%s is incomplete: %s is missing", file, want.Path)
		}
		if got.SHA256 != want.SHA256 || got.Size != want.Size {
			return Manifest{}, fmt.Errorf("%s is corrupt: %s does not match its checksum", file, want.Path)
		}
		delete(sums, want.Path)
	}
	for extra := range sums {
		return Manifest{}, fmt.Errorf("%s has an entry its manifest does not list: %s", file, extra)
	}
	listed := map[string]bool{}
	for _, f := range man.Files {
		listed[f.Path] = true
	}
	for _, s := range man.Streams {
		if !listed[snapshotPath(s.Name)] {
			return Manifest{}, fmt.Errorf("%s is incomplete: the snapshot of %s is missing", file, s.Name)
		}
	}
	return *man, nil
}

// Extract writes the archive's entries (already verified) under dir.
func Extract(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if strings.HasPrefix(name, "..") || path.IsAbs(name) {
			return fmt.Errorf("unsafe entry %q", hdr.Name)
		}
		dst := dir + "/" + name
		if err := os.MkdirAll(path.Dir(dst), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
}

// SnapshotFile is where a stream's snapshot is in an extracted archive.
func SnapshotFile(dir, stream string) string { return dir + "/" + snapshotPath(stream) }

// SnapshotEntry is a stream snapshot's entry name.
func SnapshotEntry(stream string) string { return snapshotPath(stream) }

// Sorted returns the streams in a stable order.
func Sorted(ss []Stream) []Stream {
	out := append([]Stream(nil), ss...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
