// Package backbone connects oxios to NATS JetStream: it runs nats-server
// inside the daemon (no listening port, an in-process client connection) or
// connects to an external NATS server. The code above it does not know which.
package backbone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"time"

	"github.com/oxios/oxios/internal/oxios"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure the backbone.
type Options struct {
	// URL of an external NATS server; empty runs one embedded.
	URL string
	// Credentials is a .creds file for the external server.
	Credentials string
	// DataDir is the embedded server's JetStream storage directory.
	DataDir string
	// SyncAlways fsyncs every write; otherwise SyncInterval applies.
	SyncAlways   bool
	SyncInterval time.Duration
	// Replicas of streams and buckets created on this backbone.
	Replicas int
	// Name identifies this node's connection and embedded server.
	Name   string
	Logger *slog.Logger
}

// Backbone is a live JetStream connection, with the embedded server when
// there is one.
type Backbone struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Replicas int

	srv *server.Server
	log *slog.Logger
}

// MaxPayload is the largest message the embedded server accepts. It leaves
// room for headers above the 1 MiB state value limit.
const MaxPayload = 2 << 20

// Open starts or connects to the backbone and waits until JetStream answers.
func Open(ctx context.Context, o Options) (*Backbone, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	b := &Backbone{log: o.Logger, Replicas: o.Replicas}
	copts := []nats.Option{
		nats.Name("oxios " + o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				o.Logger.Warn("backbone disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { o.Logger.Info("backbone reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	url := o.URL
	if url == "" {
		srv, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		url = srv.ClientURL()
		copts = append(copts, nats.InProcessServer(srv))
	} else if o.Credentials != "" {
		copts = append(copts, nats.UserCredentials(o.Credentials))
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("connect to NATS at %s: %w", redact(url), err)
	}
	b.Conn = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.JS = js
	// Fail at boot, with a clear message, when JetStream is not there.
	actx, cancel := context.WithTimeout(ctx, oxios.BackboneTimeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		b.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("NATS at %s does not have JetStream enabled (start nats-server with -js)", redact(url))
		}
		return nil, fmt.Errorf("JetStream at %s: %w", redact(url), err)
	}
	return b, nil
}

func startEmbedded(o Options) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "oxios-" + o.Name,
		DontListen:         true,
		JetStream:          true,
		StoreDir:           o.DataDir,
		SyncAlways:         o.SyncAlways,
		SyncInterval:       o.SyncInterval,
		MaxPayload:         MaxPayload,
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 64 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{log: o.Logger}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	return srv, nil
}

// Embedded reports whether NATS runs inside this process.
func (b *Backbone) Embedded() bool { return b.srv != nil }

// Close drains the connection and stops the embedded server, flushing its
// storage.
func (b *Backbone) Close() error {
	var err error
	if b.Conn != nil {
		err = b.Conn.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !b.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		b.Conn.Close()
	}
	b.shutdownServer()
	return err
}

func (b *Backbone) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// redact hides passwords in a (comma-separated) NATS URL for messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = neturl.User("***")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// natsLogger forwards the embedded server's warnings and errors to slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Errorf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Debugf(format string, v ...any) {}
func (l *natsLogger) Tracef(format string, v ...any) {}
