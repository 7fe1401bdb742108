package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/audit"
	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/backup"
	"github.com/oxios/oxios/internal/config"
	"github.com/oxios/oxios/internal/fileutil"
	"github.com/oxios/oxios/internal/supervisor"
	"github.com/oxios/oxios/internal/version"
)

// ownBuckets are oxios's key/value buckets; with OXIOS_* streams they are
// what a backup holds (an external NATS account may hold other streams).
var ownBuckets = []string{"agents", "state", "tokens", "sessions", "approvals", "checkpoints", "nodes", "budgets", "cron", audit.HeadBucket}

func ownStream(name string) bool {
	if strings.HasPrefix(name, "OXIOS_") {
		return true
	}
	if name == "OBJ_"+supervisor.OutputsBucket {
		return true
	}
	b, ok := strings.CutPrefix(name, "KV_")
	return ok && slices.Contains(ownBuckets, b)
}

// backupTo writes an online backup to w: each stream's consistent snapshot,
// one after the other, then the config file and the secrets.
// removeStaleBackups removes the snapshot files of backups in the home not
// written to for olderThan (0: all of them): those of a backup the daemon
// was killed during. One still being written is fresher than a minute.
func (k *Kernel) removeStaleBackups(olderThan time.Duration) {
	stale, _ := filepath.Glob(filepath.Join(k.opts.Home.Dir, ".backup-*"))
	for _, f := range stale {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) >= olderThan {
			os.Remove(f)
		}
	}
}

func (k *Kernel) backupTo(ctx context.Context, bb *backbone.Backbone, trail *audit.Log, w io.Writer) error {
	k.removeStaleBackups(10 * time.Minute)
	// Audited first, so that the entry is in the archive's trail.
	if _, err := trail.Append(ctx, audit.Entry{Actor: "node:" + k.node, Action: "backup.created", Resource: "backup"}); err != nil {
		return err
	}
	var names []string
	lister := bb.JS.StreamNames(ctx)
	for n := range lister.Name() {
		if ownStream(n) {
			names = append(names, n)
		}
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

// journalName is the restore's record of its swap, in the home while the
// swap runs: a restore killed half way is finished by the next restore or
// daemon start (FinishRestore), never left half done.
const journalName = ".restore-journal.json"

// RestorePending reports whether an interrupted restore waits to be
// finished in home.
func RestorePending(home string) bool {
	_, err := os.Stat(filepath.Join(home, journalName))
	return err == nil
}

type journal struct {
	Work  string     `json:"work"`
	Steps []swapStep `json:"steps"`
}

// swapStep puts New at Live, keeping what was there at Old.
type swapStep struct {
	New, Live, Old string
}

// FinishRestore completes a restore whose swap was interrupted (the new
// files are all in place before the swap starts, so it goes forward), and
// removes what a restore killed before its swap left. It reports whether
// it swapped anything in. The caller holds the home's PID file.
func FinishRestore(home string) (bool, error) {
	defer func() {
		// Work directories no journal refers to any more: a restore
		// killed before its swap (they hold a data copy and secrets).
		if _, err := os.Stat(filepath.Join(home, journalName)); errors.Is(err, os.ErrNotExist) {
			left, _ := filepath.Glob(filepath.Join(home, ".restore-*"))
			staged, _ := filepath.Glob(filepath.Join(home, "secrets", ".*.restore-*"))
			for _, d := range append(left, staged...) {
				os.RemoveAll(d)
			}
		}
	}()
	b, err := os.ReadFile(filepath.Join(home, journalName))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return false, fmt.Errorf("the restore journal %s is unreadable (%v): move it away, and the data, config and secrets *.before-restore-* back if they were moved", filepath.Join(home, journalName), err)
	}
	if err := runSwap(j.Steps); err != nil {
		return false, fmt.Errorf("finish an interrupted restore: %w", err)
	}
	if err := os.Remove(filepath.Join(home, journalName)); err != nil {
		return true, err
	}
	os.RemoveAll(j.Work)
	return true, nil
}

// runSwap performs the steps, skipping what an earlier attempt did.
func runSwap(steps []swapStep) error {
	for _, st := range steps {
		if _, err := os.Lstat(st.New); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Lstat(st.Live); err == nil {
				continue // done before
			}
			return fmt.Errorf("%s is gone and %s is missing", st.New, st.Live)
		}
		if fi, err := os.Lstat(st.Live); err == nil && fi.IsDir() {
			// An empty directory made meanwhile (a start creating its
			// layout) holds nothing to keep.
			os.Remove(st.Live)
		}
		if _, err := os.Lstat(st.Live); err == nil {
			if _, err := os.Lstat(st.Old); errors.Is(err, os.ErrNotExist) {
				if err := os.Rename(st.Live, st.Old); err != nil {
					return err
				}
			} else {
				return fmt.Errorf("both %s and %s exist; move one away", st.Live, st.Old)
			}
		}
		if err := os.Rename(st.New, st.Live); err != nil {
			return err
		}
	}
	return nil
}

// Restore replaces a stopped daemon's data with a backup's: it checks the
// whole archive first, restores every stream into a new data directory
// with an embedded server, checks the archive's config and secrets,
// appends backup.restored to the restored audit trail, and only then swaps
// the data directory, the config file and the secrets in (by renames in
// their own directories, recorded in a journal so that an interrupted swap
// is finished, not left half done). The previous ones are kept beside them
// (suffix .before-restore-<stamp>). Anything that fails before the swap
// leaves everything as it was. cancelled is checked up to the swap: after
// it starts, the swap runs to its end.
func Restore(ctx context.Context, home string, configPath, file string, stamp string) (backup.Manifest, []string, error) {
	if _, err := FinishRestore(home); err != nil {
		return backup.Manifest{}, nil, err
	}
	configPath, err := filepath.Abs(configPath)
	if err != nil {
		return backup.Manifest{}, nil, err
	}
	man, kept, err := restore(ctx, home, configPath, file, stamp)
	return man, kept, err
}

// unchanged marks an error from before the swap.
func unchanged(err error) error { return fmt.Errorf("%w; nothing was changed", err) }

func restore(ctx context.Context, home string, configPath, file string, stamp string) (backup.Manifest, []string, error) {
	man, err := backup.Verify(file)
	if err != nil {
		return man, nil, unchanged(err)
	}
	work, err := os.MkdirTemp(home, ".restore-")
	if err != nil {
		return man, nil, unchanged(err)
	}
	swapping := false
	defer func() {
		if !swapping {
			os.RemoveAll(work)
		}
	}()
	files := filepath.Join(work, "files")
	if err := backup.Extract(file, files); err != nil {
		return man, nil, unchanged(fmt.Errorf("extract: %w", err))
	}
	if err := checkRestorable(home, configPath, files); err != nil {
		return man, nil, unchanged(err)
	}
	data := filepath.Join(work, "data")
	if err := fillData(ctx, man, files, data); err != nil {
		return man, nil, unchanged(err)
	}
	if err := ctx.Err(); err != nil {
		return man, nil, unchanged(err)
	}
	steps, err := stageSwap(home, configPath, files, data, stamp)
	if err != nil {
		return man, nil, unchanged(err)
	}
	jb, _ := json.Marshal(journal{Work: work, Steps: steps})
	jpath := filepath.Join(home, journalName)
	if err := fileutil.WriteAtomic(jpath, jb, 0o600); err != nil {
		os.Remove(jpath)
		unstage(steps)
		return man, nil, unchanged(err)
	}
	swapping = true
	if err := runSwap(steps); err != nil {
		return man, nil, fmt.Errorf("the swap stopped half way (%v); it is finished by the next oxios start or restore", err)
	}
	for _, st := range steps {
		fileutil.SyncDir(filepath.Dir(st.Live))
	}
	os.Remove(jpath)
	fileutil.SyncDir(home)
	os.RemoveAll(work)
	var kept []string
	for _, st := range steps {
		if _, err := os.Lstat(st.Old); err == nil {
			kept = append(kept, st.Old)
		}
	}
	return man, kept, nil
}

// checkRestorable checks that what the backup in files would swap in works
// with this binary: the config in effect after the restore (the backup's,
// else the current one) loads and uses the data directory the restore
// fills, and the secrets are there.
func checkRestorable(home, configPath, files string) error {
	effective := configPath
	cfgFile := filepath.Join(files, "config.toml")
	if b, err := os.ReadFile(cfgFile); err == nil {
		if _, err := config.Parse("the backup's config.toml", b, CheckConfig); err != nil {
			return fmt.Errorf("the backup's config file does not load in this oxios: %w", err)
		}
		effective = cfgFile
	}
	if c, err := loadConfig(effective); err == nil && c.Backbone.URL != "" {
		return fmt.Errorf("the config in effect after the restore sets backbone.url: the streams would live on that NATS server, not in %s; restore works with the embedded backbone", filepath.Join(home, "data"))
	}
	for _, sec := range []string{"admin.token", "audit.key"} {
		if b, err := os.ReadFile(filepath.Join(files, "secrets", sec)); err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return fmt.Errorf("the backup has no usable secrets/%s", sec)
		}
	}
	return nil
}

// fillData restores the backup's streams into a new data directory, with
// a server of its own, and notes the restore in the restored audit trail.
func fillData(ctx context.Context, man backup.Manifest, files, data string) error {
	bb, err := backbone.Open(ctx, backbone.Options{DataDir: data, Name: "restore", SyncAlways: true})
	if err != nil {
		return fmt.Errorf("start a server for the restore: %w", err)
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
		trail, err := audit.Open(ctx, bb.JS, audit.Options{KeyPath: filepath.Join(files, "secrets", "audit.key")})
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
	return restoreErr
}

// stageSwap lists the swap's steps: the new data directory, and each file
// of the backup copied first into its target's own directory (a config
// elsewhere may be on another file system), so that the swap only renames.
func stageSwap(home, configPath, files, data, stamp string) ([]swapStep, error) {
	old := func(live string) string { return live + ".before-restore-" + stamp }
	steps := []swapStep{{New: data, Live: filepath.Join(home, "data"), Old: old(filepath.Join(home, "data"))}}
	os.MkdirAll(filepath.Join(home, "secrets"), 0o700)
	for _, f := range []struct{ entry, live string }{
		{"config.toml", configPath},
		{"secrets/admin.token", filepath.Join(home, "secrets", "admin.token")},
		{"secrets/audit.key", filepath.Join(home, "secrets", "audit.key")},
	} {
		src := filepath.Join(files, f.entry)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		staged, err := stage(src, f.live)
		if err != nil {
			unstage(steps)
			return nil, fmt.Errorf("stage %s: %w", f.live, err)
		}
		steps = append(steps, swapStep{New: staged, Live: f.live, Old: old(f.live)})
	}
	return steps, nil
}

// unstage removes the staged files of steps (not the data directory, which
// is in the work directory).
func unstage(steps []swapStep) {
	for _, st := range steps[1:] {
		os.Remove(st.New)
	}
}

// stage copies src next to live (same directory, 0600) and returns the copy.
func stage(src, live string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(live), "."+filepath.Base(live)+".restore-*")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", err
	}
	err = out.Chmod(0o600)
	if err == nil {
		err = out.Sync() // on disk before the rename makes it the live file
	}
	if err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), out.Close()
}
