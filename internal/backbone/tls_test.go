package backbone_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oxios/oxios/internal/backbone"
	"github.com/oxios/oxios/internal/backbone/backbonetest"
	"github.com/oxios/oxios/internal/store"
)

// pki writes a CA and a certificate for 127.0.0.1 signed by it, and
// returns their paths (cert, key, ca).
func pki(t *testing.T) (string, string, string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oxios test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("node.pem", "CERTIFICATE", der), write("node.key", "EC PRIVATE KEY", kb), write("ca.pem", "CERTIFICATE", caDER)
}

// Routes with TLS (cluster.tls_cert, tls_key, tls_ca): three servers form
// a cluster over them; a fourth without TLS is not let in.
func TestClusterRoutesOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	cert, key, ca := pki(t)
	addrs := backbonetest.FreePorts(t, 4)
	bbs := make([]*backbone.Backbone, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		peers := slices.Delete(slices.Clone(addrs[:3]), i, i+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			bbs[i], errs[i] = backbone.Open(ctx, backbone.Options{DataDir: t.TempDir(), Name: string(rune('a' + i)), Replicas: 3,
				Cluster: &backbone.Cluster{Listen: addrs[i], Peers: peers, RoutePassword: "k", ClientPassword: "k",
					TLSCert: cert, TLSKey: key, TLSCA: ca}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d over TLS: %v", i, err)
		}
		defer bbs[i].Close()
	}
	ctx := context.Background()
	st, err := store.Open(ctx, bbs[0].JS, store.Options{Bucket: "tls", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(ctx, "ns", "k", []byte(`{"tls":true}`)); err != nil {
		t.Fatal(err)
	}
	// Without TLS, the same password does not get a route.
	plain := backbone.Options{DataDir: t.TempDir(), Name: "plain",
		Cluster: &backbone.Cluster{Listen: addrs[3], Peers: addrs[:3], RoutePassword: "k", ClientPassword: "k"}}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if bb, err := backbone.Open(pctx, plain); err == nil {
		bb.Close()
		t.Fatal("a node without TLS joined a cluster whose routes are TLS")
	}
	for i, bb := range bbs {
		if bb.Routes() != 2 {
			t.Errorf("node %d has %d routes, want 2 (only the TLS nodes)", i, bb.Routes())
		}
	}
}
