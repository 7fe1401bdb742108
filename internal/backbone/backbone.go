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
	"sync"
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
	Name string
	// Cluster, if set, makes the embedded server one of a cluster.
	Cluster *Cluster
	// Instance tells this home's server apart from another's of the same
	// node name in a cluster's JetStream (whose peers are named by server).
	Instance string
	// Precheck, on an embedded cluster, runs on a connection to a server
	// routed to the peers but without JetStream, before the node joins the
	// cluster's JetStream: an error (a name another live node holds) stops
	// the start before this node becomes a peer of the cluster's meta
	// group, which would outlive it.
	Precheck func(ctx context.Context, nc *nats.Conn) error
	Logger   *slog.Logger
}

// Cluster is how an embedded server joins its peers: routes between the
// nodes' servers, authenticated with a password every node derives from
// the cluster key, and JetStream clustered over them.
type Cluster struct {
	// Listen is this server's route address; Peers are the others'.
	Listen string
	Peers  []string
	// RoutePassword authenticates routes; ClientPassword the clients of
	// the loopback port a clustered server must open (see startEmbedded).
	RoutePassword  string
	ClientPassword string
	// TLSCert, TLSKey and TLSCA, if set, secure the routes.
	TLSCert, TLSKey, TLSCA string
}

// routeUser and clientUser are the fixed user names; the passwords carry
// the secret.
const (
	routeUser  = "oxios-route"
	clientUser = "oxios"
)

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
	if url == "" && o.Cluster != nil && o.Precheck != nil {
		if err := precheck(ctx, o); err != nil {
			return nil, err
		}
	}
	if url == "" {
		srv, err := startEmbedded(o, true)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		url = srv.ClientURL()
		copts = append(copts, nats.InProcessServer(srv))
		if o.Cluster != nil {
			copts = append(copts, nats.UserInfo(clientUser, o.Cluster.ClientPassword))
		}
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
	if err := b.awaitJetStream(ctx, o, url); err != nil {
		b.Close()
		return nil, err
	}
	if o.Cluster != nil || o.URL != "" {
		b.JS = retryingJS{JetStream: js, log: o.Logger}
	}
	return b, nil
}

// externalWait bounds how long an external NATS that answers JetStream
// requests with a transient error (no leader yet) is waited for at boot.
const externalWait = 10 * time.Second

// awaitJetStream fails at boot, with a clear message, when JetStream is
// not there. A clustered server answers only once its peers have elected
// a meta leader: it is waited for until ctx ends, saying so every few
// seconds.
func (b *Backbone) awaitJetStream(ctx context.Context, o Options, url string) error {
	attempt := oxios.BackboneTimeout
	if o.Cluster != nil || o.URL != "" {
		attempt = 2 * time.Second // and again: a cluster may be electing
	}
	started := time.Now()
	said := started
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		_, err := b.JS.AccountInfo(actx)
		cancel()
		switch {
		case err == nil:
			if o.Cluster != nil {
				o.Logger.Info("cluster JetStream ready", "after", time.Since(started).Round(time.Millisecond).String())
			}
			return nil
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			if o.Cluster == nil {
				return fmt.Errorf("NATS at %s does not have JetStream enabled (start nats-server with -js)", redact(url))
			}
		case o.Cluster == nil && (!transient(err) || time.Since(started) > externalWait):
			// An external cluster electing a leader answers in a moment;
			// anything else, or longer, is an error to report.
			return fmt.Errorf("JetStream at %s: %w", redact(url), err)
		}
		if ctx.Err() != nil {
			if o.Cluster == nil {
				return fmt.Errorf("JetStream at %s: %w", redact(url), err)
			}
			return fmt.Errorf("the cluster's JetStream did not answer (%d of %d peers routed): %w", peersRouted(b.srv), len(o.Cluster.Peers), ctx.Err())
		}
		if o.Cluster != nil && time.Since(said) >= 5*time.Second {
			said = time.Now()
			o.Logger.Warn("waiting for the cluster: JetStream needs a majority of the nodes up", "routed_peers", peersRouted(b.srv), "peers", strings.Join(o.Cluster.Peers, ","), "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func startEmbedded(o Options, js bool) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "oxios-" + o.Name,
		DontListen:         true,
		JetStream:          js,
		StoreDir:           o.DataDir,
		SyncAlways:         o.SyncAlways,
		SyncInterval:       o.SyncInterval,
		MaxPayload:         MaxPayload,
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 64 << 20,
	}
	if o.Cluster != nil {
		if err := clusterOptions(opts, o.Cluster); err != nil {
			return nil, err
		}
		if o.Instance != "" {
			opts.ServerName += "-" + o.Instance[:min(8, len(o.Instance))]
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{log: o.Logger, cluster: o.Cluster != nil}, false, false, false)
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
// On a cluster, a route refused for its credentials is said plainly: it
// is a node whose cluster key differs.
type natsLogger struct {
	log     *slog.Logger
	cluster bool

	mu        sync.Mutex
	routeSaid time.Time // when a failed route was last said
}

// keyMismatch is logged when a route fails authentication.
const keyMismatch = "cluster route refused: authentication failed, so the two nodes' secrets/cluster.key differ; copy the first node's key to every node"

func (l *natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Plaintext passwords detected") {
		// The passwords are derived from the cluster key at each start and
		// are in no file: nothing for a user to change.
		return
	}
	l.log.Warn("nats: " + msg)
}
func (l *natsLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Error trying to connect to route") {
		// A peer that is down is tried again every second: said once a
		// minute, not each time.
		l.mu.Lock()
		quiet := time.Since(l.routeSaid) < time.Minute
		if !quiet {
			l.routeSaid = time.Now()
		}
		l.mu.Unlock()
		if quiet {
			l.log.Debug("nats: " + msg)
		} else {
			l.log.Warn("nats: "+msg, "note", "a peer that is down is tried again every second; said again in a minute")
		}
		return
	}
	if l.cluster && strings.Contains(msg, "rid:") && (strings.Contains(msg, "Authorization Violation") || strings.Contains(msg, "authentication error")) {
		l.log.Error(keyMismatch, "nats", msg)
		return
	}
	l.log.Error("nats: " + msg)
}
func (l *natsLogger) Debugf(format string, v ...any) {}
func (l *natsLogger) Tracef(format string, v ...any) {}
