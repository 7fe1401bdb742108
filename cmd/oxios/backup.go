package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/oxios/oxios/internal/backup"
	"github.com/oxios/oxios/internal/daemon"
	"github.com/oxios/oxios/internal/doctor"
	"github.com/oxios/oxios/internal/kernel"
)

func (a *app) backupCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Take an online backup of the daemon into a tar.gz",
		Long: `Backup asks the running daemon for a backup and writes it to FILE: every
stream (the event log, the audit trail, every bucket: agents, state, cron
jobs, budgets, tokens, ...) as the server's own consistent snapshot, taken
one after the other while the daemon runs, plus the config file and the
secrets (FILE is written 0600: it holds them). The download is checked
before FILE is written; a backup that fails leaves no FILE behind. An
existing FILE is kept unless --force.`,
		Example: "  oxios backup /var/backups/oxios-$(date +%F).tar.gz",
		Args:    exactArgs(1, "a file to write"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			dst := args[0]
			if _, err := os.Lstat(dst); err == nil && !force {
				return usageError("%s exists; give --force to replace it", dst)
			}
			removeStalePartials(dst)
			tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
			if err != nil {
				return usageError("cannot write %s: %v", dst, err)
			}
			defer os.Remove(tmp.Name())
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var n atomic.Int64
			done, drawn := make(chan struct{}), make(chan struct{})
			go func() { // progress, on a terminal only (the spinner knows)
				defer close(drawn)
				sp := newSpinner(a.stderr, "backing up")
				defer sp.done()
				t0 := time.Now()
				for {
					select {
					case <-done:
						return
					case <-time.After(200 * time.Millisecond):
						sp.label = "backing up " + doctor.Bytes(uint64(n.Load()))
						sp.tick(time.Since(t0))
					}
				}
			}()
			_, err = c.Backup(ctx, io.MultiWriter(tmp, countWriter{&n}))
			close(done)
			<-drawn
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return apiError(err)
			}
			man, err := backup.Verify(tmp.Name())
			if err != nil {
				return failure(fmt.Errorf("the backup is incomplete (see oxios logs): %v", err))
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return failure(err)
			}
			var msgs uint64
			for _, s := range man.Streams {
				msgs += s.Messages
			}
			if a.output == "json" {
				return printJSON(a.stdout, man)
			}
			fmt.Fprintf(a.stdout, "backup written to %s: %d streams, %d messages, %s\n", dst, len(man.Streams), msgs, doctor.Bytes(uint64(n.Load())))
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

// removeStalePartials removes what a killed backup to dst left beside it
// (.NAME.partial-*, the secrets included) once nothing has written to it
// for ten minutes.
func removeStalePartials(dst string) {
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*"))
	for _, f := range stale {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) >= 10*time.Minute {
			os.Remove(f)
		}
	}
}

// restoreMark is the listen address a restore writes in the PID file: it
// holds the home, and stop and start recognise it.
const restoreMark = "restore"

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(b []byte) (int, error) { w.n.Add(int64(len(b))); return len(b), nil }

func (a *app) restoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the stopped daemon's data with a backup",
		Long: `Restore needs the daemon stopped. It checks the whole archive first (every
entry against its checksum), restores every stream into a new data
directory, appends backup.restored to the restored audit trail, and only
then swaps the data directory, the config file and the secrets in. The
previous ones stay beside them with the suffix .before-restore-<time>.
A corrupt, truncated or foreign archive changes nothing.`,
		Example: "  oxios stop && oxios restore oxios-2026-11-25.tar.gz && oxios start",
		Args:    exactArgs(1, "a backup file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.home()
			if err != nil {
				return err
			}
			if st, err := daemon.ReadStatus(h.PIDPath()); err == nil && st.State == daemon.Running {
				if st.Listen == restoreMark {
					return failure(fmt.Errorf("another restore is running (PID %d)", st.PID))
				}
				return failure(fmt.Errorf("the daemon is running (PID %d); stop it first: oxios stop", st.PID))
			}
			// Files restored by another user (root) would be unreadable to
			// the home's owner, whose daemon reads them.
			if fi, err := os.Stat(h.Dir); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
					return usageError("%s belongs to uid %d: run the restore as that user (sudo -u '#%d' oxios restore ...)", h.Dir, st.Uid, st.Uid)
				}
			}
			if kernel.RestorePending(h.Dir) {
				fmt.Fprintln(a.stderr, "finishing an interrupted restore first")
			}
			configPath := a.configPath
			if configPath == "" {
				configPath = h.ConfigPath()
			}
			if err := os.MkdirAll(h.Dir, 0o700); err != nil {
				return failure(err)
			}
			// The daemon's PID file keeps a daemon from starting meanwhile.
			pidf, err := daemon.Acquire(h.PIDPath(), restoreMark)
			if err != nil {
				return failure(fmt.Errorf("cannot take the home for the restore: %w", err))
			}
			defer pidf.Release()
			stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			// A signal cancels the restore before its swap; the swap itself
			// always runs to its end (the process does not die mid-way).
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sigs)
			go func() {
				if _, ok := <-sigs; ok {
					fmt.Fprintln(a.stderr, "interrupted: stopping the restore (if its swap has begun, the swap completes)")
					cancel()
				}
			}()
			man, kept, err := kernel.Restore(ctx, h.Dir, configPath, args[0], stamp)
			// (The whole archive is checked before anything is touched;
			// a bad one is bad input.)
			if _, bad := errors.AsType[*backup.ArchiveError](err); bad {
				return usageError("%v", err)
			}
			if err != nil {
				return failure(fmt.Errorf("restore: %v", err))
			}
			var msgs uint64
			for _, s := range man.Streams {
				msgs += s.Messages
			}
			fmt.Fprintf(a.stdout, "restored %d streams (%d messages) from a backup of node %s taken %s\n", len(man.Streams), msgs, man.Node, man.Created.Local().Format(time.DateTime))
			for _, k := range kept {
				fmt.Fprintf(a.stdout, "  the previous %s is kept at %s\n", filepath.Base(k[:len(k)-len(".before-restore-"+stamp)]), k)
			}
			fmt.Fprintln(a.stderr, "note: tokens and sessions are as they were in the backup; revoke again any revoked since (oxios token list)")
			return nil
		},
	}
}
