package daemon

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context cancelled by the first SIGTERM or SIGINT,
// which are treated alike. onSignal is told each signal; a second signal
// calls force, which is expected to exit the process. stop releases the
// signal handlers.
func SignalContext(parent context.Context, onSignal func(os.Signal), force func()) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			onSignal(s)
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			onSignal(s)
			force()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
