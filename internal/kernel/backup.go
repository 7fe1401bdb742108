package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/backup"
	"github.com/oxios/oxios/internal/version"
)

// backupTo writes an online backup to w: each stream's consistent snapshot,
// one after the other, then the config file and the secrets.
func (k *Kernel) backupTo(ctx context.Context, bb *backbone.Backbone, trail *audit.Log, w io.Writer) error {
	// Audited first, so that the entry is in the archive's trail.
	if _, err := trail.Append(ctx, audit.Entry{Actor: "node:" + k.node, Action: "backup.created", Resource: "backup"}); err != nil {
		return err
	}
	var names []string
	lister := bb.JS.StreamNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(names)
	bw := backup.NewWriter(w, k.node, version.Get().Version)
	for _, name := range names {
		tmp, err := os.CreateTemp(k.opts.Home.Dir, ".backup-*")
		if err != nil {
			return err
		}
		s, err := backup.Snapshot(ctx, bb.Conn, name, tmp)
		if err == nil {
			var size int64
			if size, err = tmp.Seek(0, io.SeekCurrent); err == nil {
				if _, err = tmp.Seek(0, io.SeekStart); err == nil {
					err = bw.Add(backup.SnapshotEntry(name), size, 0o600, tmp)
				}
			}
		}
		tmp.Close()
		os.Remove(tmp.Name())
		if err != nil {
			return err
		}
		bw.AddStream(s)
	}
	files := map[string]string{
		"config.toml":         k.opts.ConfigPath,
		"secrets/admin.token": k.opts.Home.AdminTokenPath(),
		"secrets/audit.key":   k.opts.Home.AuditKeyPath(),
	}
	for _, entry := range []string{"config.toml", "secrets/admin.token", "secrets/audit.key"} {
		f, err := os.Open(files[entry])
		if errors.Is(err, os.ErrNotExist) && entry == "config.toml" {
			continue // the defaults: nothing to keep
		}
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil {
			err = bw.Add(entry, fi.Size(), 0o600, f)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	k.log.Info("backup written", "streams", len(names))
	return bw.Close()
}

// Restore replaces a stopped daemon's data with a backup's: it checks the
// whole archive first, restores every stream into a new data directory
// with an embedded server, appends backup.restored to the restored audit
// trail, and only then swaps the data directory, the config file and the
// secrets. The previous ones are kept beside them (suffix .before-restore-
// <time>). Anything that fails before the swap leaves everything as it
// was.
func Restore(ctx context.Context, home string, configPath, file string, stamp string) (backup.Manifest, []string, error) {
	man, err := backup.Verify(file)
	if err != nil {
		return man, nil, err
	}
	work, err := os.MkdirTemp(home, ".restore-")
	if err != nil {
		return man, nil, err
	}
	defer os.RemoveAll(work)
	files := filepath.Join(work, "files")
	if err := backup.Extract(file, files); err != nil {
		return man, nil, fmt.Errorf("extract: %w", err)
	}
	data := filepath.Join(work, "data")
	bb, err := backbone.Open(ctx, backbone.Options{DataDir: data, Name: "restore", SyncAlways: true})
	if err != nil {
		return man, nil, fmt.Errorf("start a server for the restore: %w", err)
	}
	restoreErr := func() error {
		for _, s := range backup.Sorted(man.Streams) {
			f, err := os.Open(backup.SnapshotFile(files, s.Name))
			if err != nil {
				return err
			}
			err = backup.Restore(ctx, bb.Conn, s, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		trail, err := audit.Open(ctx, bb.JS, filepath.Join(files, "secrets", "audit.key"), 1)
		if err != nil {
			return fmt.Errorf("open the restored audit trail: %w", err)
		}
		_, err = trail.Append(ctx, audit.Entry{Actor: "cli", Action: "backup.restored", Resource: "backup",
			Detail: map[string]any{"created": man.Created, "node": man.Node, "streams": len(man.Streams)}})
		return err
	}()
	if cerr := bb.Close(); restoreErr == nil && cerr != nil {
		restoreErr = cerr
	}
	if restoreErr != nil {
		return man, nil, restoreErr
	}

	// The swap: each step can be undone until the last.
	var kept []string
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	swap := func(newPath, livePath string) error {
		old := livePath + ".before-restore-" + stamp
		had := false
		if _, err := os.Lstat(livePath); err == nil {
			if err := os.Rename(livePath, old); err != nil {
				return err
			}
			had = true
		}
		if err := os.Rename(newPath, livePath); err != nil {
			if had {
				os.Rename(old, livePath)
			}
			return err
		}
		undo = append(undo, func() {
			os.Rename(livePath, newPath)
			if had {
				os.Rename(old, livePath)
			}
		})
		if had {
			kept = append(kept, old)
		}
		return nil
	}
	steps := [][2]string{{data, filepath.Join(home, "data")}}
	os.MkdirAll(filepath.Join(home, "secrets"), 0o700)
	for _, f := range []struct{ entry, live string }{
		{"config.toml", configPath},
		{"secrets/admin.token", filepath.Join(home, "secrets", "admin.token")},
		{"secrets/audit.key", filepath.Join(home, "secrets", "audit.key")},
	} {
		if _, err := os.Stat(filepath.Join(files, f.entry)); err == nil {
			steps = append(steps, [2]string{filepath.Join(files, f.entry), f.live})
		}
	}
	for _, s := range steps {
		if err := swap(s[0], s[1]); err != nil {
			rollback()
			return man, nil, fmt.Errorf("swap %s: %w (nothing was changed)", s[1], err)
		}
	}
	return man, kept, nil
}
