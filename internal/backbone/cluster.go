package backbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterName is the NATS cluster the nodes' embedded servers form.
const ClusterName = "oxios"

// clusterOptions makes opts a clustered server's. A server whose client
// port is off (DontListen) never starts its routes (StartRouting waits for
// the client accept loop), so a clustered server listens for clients on
// loopback, on a port of its choosing, behind a password derived from the
// cluster key; the daemon itself keeps its in-process connection.
func clusterOptions(opts *server.Options, c *Cluster) error {
	tuneRaft()
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("cluster.listen: %w", err)
	}
	opts.DontListen = false
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Username, opts.Password = clientUser, c.ClientPassword
	opts.Cluster = server.ClusterOpts{
		Name:     ClusterName,
		Host:     host,
		Port:     port,
		Username: routeUser,
		Password: c.RoutePassword,
	}
	if c.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: true})
		if err != nil {
			return fmt.Errorf("cluster.tls_cert: %w", err)
		}
		// As nats-server's own config does for clusters: both ends verify,
		// and a route is a client of its peer too, so the CA is also the
		// root its peers' certificates are checked against.
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.RootCAs = tc.ClientCAs
		opts.Cluster.TLSConfig = tc
		opts.Cluster.TLSTimeout = 2
	}
	for _, p := range c.Peers {
		opts.Routes = append(opts.Routes, &neturl.URL{Scheme: "nats-route", Host: p, User: neturl.UserPassword(routeUser, c.RoutePassword)})
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number", p)
	}
	return host, port, nil
}

// precheck starts this node's server routed to its peers but without
// JetStream, waits a moment for the routes to the peers that are up, and
// runs o.Precheck on a connection to it; the server is stopped after.
func precheck(ctx context.Context, o Options) error {
	srv, err := startEmbedded(o, false)
	if err != nil {
		return err
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	deadline := time.Now().Add(routeWait)
	for peersRouted(srv) < len(o.Cluster.Peers) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv), nats.UserInfo(clientUser, o.Cluster.ClientPassword))
	if err != nil {
		return err
	}
	defer nc.Close()
	return o.Precheck(ctx, nc)
}

// routeWait bounds the wait for routes to the peers before the precheck:
// a peer that is up connects in milliseconds; one that is down is not
// waited for longer.
const routeWait = 1500 * time.Millisecond

// Routes is how many of its peers this node's embedded server is routed
// to (0 without an embedded cluster).
func (b *Backbone) Routes() int {
	if b.srv == nil {
		return 0
	}
	return peersRouted(b.srv)
}

// peersRouted counts the servers srv has routes to: a peer is reached by
// a pool of several route connections.
func peersRouted(srv *server.Server) int {
	rz, err := srv.Routez(nil)
	if err != nil {
		return 0
	}
	peers := map[string]bool{}
	for _, r := range rz.Routes {
		peers[r.RemoteID] = true
	}
	return len(peers)
}

// retryingJS is JetStream on a cluster: creating a stream or bucket rides
// out what a cluster answers while it forms (no meta leader yet, no
// responders, several nodes creating the same bucket at once, too few
// peers for its replicas yet), and returns once the stream has a leader,
// so the first read of it does not fail.
type retryingJS struct {
	jetstream.JetStream
	log *slog.Logger
}

// createBudget bounds one create's retries. An attempt gets firstAttempt,
// doubled after each timeout up to attempt: when several nodes create one
// bucket at once, the server answers one of them and lets the others time
// out, so the first attempts are short (a create takes ~70 ms here).
const (
	createBudget = 60 * time.Second
	firstAttempt = 250 * time.Millisecond
	attempt      = 2 * time.Second
)

func (r retryingJS) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retry(ctx, r, "stream "+cfg.Name, cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		return r.JetStream.CreateOrUpdateStream(ctx, cfg)
	})
}

func (r retryingJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retry(ctx, r, "bucket "+cfg.Bucket, "KV_"+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return r.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

func (r retryingJS) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retry(ctx, r, "bucket "+cfg.Bucket, "KV_"+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, err := r.JetStream.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			return nil, err
		}
		return kv, err
	})
}

func (r retryingJS) CreateOrUpdateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return retry(ctx, r, "bucket "+cfg.Bucket, "OBJ_"+cfg.Bucket, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return r.JetStream.CreateOrUpdateObjectStore(ctx, cfg)
	})
}

// retry runs create until it succeeds, fails for good, or the budget or
// ctx ends; then it waits for stream to have a leader.
func retry[T any](ctx context.Context, r retryingJS, what, stream string, create func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, createBudget)
	defer cancel()
	var zero T
	wait := firstAttempt
	for n := 0; ; n++ {
		actx, acancel := context.WithTimeout(ctx, wait)
		wait = min(2*wait, attempt)
		v, err := create(actx)
		acancel()
		if err == nil {
			return v, r.awaitLeader(ctx, stream)
		}
		if !transient(err) || ctx.Err() != nil {
			return zero, err
		}
		if n > 0 && n%5 == 0 {
			r.log.Info("still creating "+what+" on the cluster", "attempts", n, "err", err)
		}
		select {
		case <-ctx.Done():
			return zero, err
		case <-time.After(time.Duration(min(n+1, 10)) * 50 * time.Millisecond):
		}
	}
}

// awaitLeader returns once stream reports a leader (a stream just created
// on a cluster answers reads only then).
func (r retryingJS) awaitLeader(ctx context.Context, stream string) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		s, err := r.JetStream.Stream(actx, stream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(actx); err == nil && (info.Cluster == nil || info.Cluster.Leader != "") {
				cancel()
				return nil
			}
		}
		cancel()
		if err != nil && !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s has no leader: %w", stream, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// transient reports whether err is what a forming cluster answers, worth
// another attempt.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch {
		case api.Code >= 500:
			return true
		case api.ErrorCode == jetstream.JSErrCodeStreamNameInUse, api.ErrorCode == 10005: // 10005: no suitable peers yet
			return true
		case api.ErrorCode == jetstream.JSErrCodeStreamNotFound:
			// A stream another node is creating this moment is not yet
			// found by this one.
			return true
		}
	}
	return false
}

// ErrStandaloneData is a home whose data directory holds a single
// server's JetStream store, started as a node of a cluster: JetStream does
// not take a single server's streams into a cluster (it deletes them, as
// orphans, once the cluster has formed), so the start is refused.
var ErrStandaloneData = errors.New("holds the JetStream store of a single node, which a cluster would delete as orphaned: take a backup first (oxios backup single.tar.gz, while it runs as a single node), then move the data directory aside (it is kept, not read) and start again; the audit key stays the cluster key, so the old trail still verifies from the backup")

// CheckDataFor refuses, for an embedded cluster, a data directory that
// holds a single server's store (see ErrStandaloneData).
func CheckDataFor(dataDir string) error {
	streams, _ := os.ReadDir(filepath.Join(dataDir, "jetstream", "$G", "streams"))
	if len(streams) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dataDir, "jetstream", "$SYS", "_js_")); err == nil {
		return nil // a cluster's store already
	}
	return fmt.Errorf("%s %w", dataDir, ErrStandaloneData)
}
