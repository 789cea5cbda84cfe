// Package pki keeps Berth's local certificate authority and serving
// certificate, so that a fresh install serves TLS: ca.crt is what clients
// trust (podman --cert-dir, skopeo --cert-dir, curl --cacert).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/atomicfile"
)

// Files under the pki directory.
const (
	CAFile   = "ca.crt"
	caKey    = "ca.key"
	CertFile = "tls.crt"
	keyFile  = "tls.key"
)

// renewBefore renews a serving certificate this long before it expires.
const renewBefore = 30 * 24 * time.Hour

// Ensure returns the serving certificate kept in dir, creating the CA and
// the certificate on first use and re-issuing the certificate when it
// nears expiry or does not cover hosts. An existing CA is never replaced,
// so clients that trust it keep working.
func Ensure(dir string, hosts []string) (tls.Certificate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create %s: %w", dir, err)
	}
	caCert, caPriv, err := ensureCA(dir)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, keyFile)
	if cert, err := loadPair(dir); err == nil && covers(cert.Leaf, hosts) &&
		time.Until(cert.Leaf.NotAfter) > renewBefore && cert.Leaf.CheckSignatureFrom(caCert) == nil {
		return cert, nil
	}
	if err := issue(certPath, keyPath, caCert, caPriv, hosts, certValidity); err != nil {
		return tls.Certificate{}, err
	}
	return loadPair(dir)
}

// certValidity is how long a serving certificate is issued for.
const certValidity = 365 * 24 * time.Hour

// Source hands the TLS stack the serving certificate and re-issues it
// under the same CA when it nears expiry, so a server that runs for more
// than a year keeps serving. It also issues certificates for host names
// given while the server runs (HostCertificates: the registry's routes).
type Source struct {
	dir     string
	hosts   []string
	mu      sync.Mutex
	cert    *tls.Certificate
	checked time.Time

	caCert *x509.Certificate
	caPriv *ecdsa.PrivateKey
	// hostMu guards hostCerts apart from mu, so that issuing one does not
	// hold up handshakes that want the serving certificate.
	hostMu    sync.Mutex
	hostCerts map[string]*tls.Certificate
}

// NewSource prepares the certificate (as Ensure does) and returns a Source.
func NewSource(dir string, hosts []string) (*Source, error) {
	cert, err := Ensure(dir, hosts)
	if err != nil {
		return nil, err
	}
	caCert, caPriv, err := ensureCA(dir)
	if err != nil {
		return nil, err
	}
	return &Source{dir: dir, hosts: hosts, cert: &cert, checked: time.Now(), caCert: caCert, caPriv: caPriv,
		hostCerts: map[string]*tls.Certificate{}}, nil
}

// HostCertificates returns a certificate from the CA for each of hosts,
// issuing those it has none for (or whose certificate nears expiry) and
// forgetting hosts no longer asked for. The same host gets the same
// certificate (pointer) until it is re-issued, so a caller can tell a
// change by comparing them.
//
// These certificates and their keys live in memory only: unlike the
// serving certificate, whose key is on disk so that a restart serves the
// same one, they are cheap to issue again at each start, clients trust
// the CA rather than them, and a host that goes away leaves no key behind
// on disk.
func (s *Source) HostCertificates(hosts []string) (map[string]*tls.Certificate, error) {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	out := make(map[string]*tls.Certificate, len(hosts))
	for _, h := range hosts {
		if c := s.hostCerts[h]; c != nil && time.Until(c.Leaf.NotAfter) > renewBefore {
			out[h] = c
			continue
		}
		c, err := issueInMemory(s.caCert, s.caPriv, []string{h}, certValidity)
		if err != nil {
			return nil, fmt.Errorf("issue a certificate for %s: %w", h, err)
		}
		out[h] = c
	}
	s.hostCerts = out
	return out, nil
}

// GetCertificate implements tls.Config.GetCertificate. It looks at the
// expiry at most once an hour; when renewal fails it keeps serving the
// current certificate and tries again next hour.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) >= time.Hour && time.Until(s.cert.Leaf.NotAfter) < renewBefore {
		s.checked = time.Now()
		if cert, err := Ensure(s.dir, s.hosts); err == nil {
			s.cert = &cert
		}
	}
	return s.cert, nil
}

// DefaultHosts are the names a local install is reached by.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && !slices.Contains(hosts, h) {
		hosts = append(hosts, h)
	}
	return hosts
}

func covers(leaf *x509.Certificate, hosts []string) bool {
	if leaf == nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func ensureCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKey)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		priv, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("%s: CA key is not ECDSA", keyPath)
		}
		return pair.Leaf, priv, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	// Only a directory with neither file gets a new CA: replacing a CA
	// whose key was moved away would break every client that trusts it.
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return nil, nil, fmt.Errorf("%s exists without its pair (%s, %s): restore the missing file or remove both to create a new CA", p, CAFile, caKey)
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Berth local CA " + host, Organization: []string{"Berth"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	if err := writePair(certPath, keyPath, der, priv); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, priv, err
}

func issue(certPath, keyPath string, ca *x509.Certificate, caPriv *ecdsa.PrivateKey, hosts []string, validity time.Duration) error {
	der, priv, err := sign(ca, caPriv, hosts, validity)
	if err != nil {
		return err
	}
	return writePair(certPath, keyPath, der, priv)
}

// issueInMemory is issue without files.
func issueInMemory(ca *x509.Certificate, caPriv *ecdsa.PrivateKey, hosts []string, validity time.Duration) (*tls.Certificate, error) {
	der, priv, err := sign(ca, caPriv, hosts, validity)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// sign makes a key and a serving certificate for hosts under the CA.
func sign(ca *x509.Certificate, caPriv *ecdsa.PrivateKey, hosts []string, validity time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Berth"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &priv.PublicKey, caPriv)
	if err != nil {
		return nil, nil, fmt.Errorf("issue serving certificate: %w", err)
	}
	return der, priv, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writePair writes the key and then the certificate, each through a temp
// file and rename, so a crash never leaves half a file. Both are 0600: the
// certificate is public, but it sits in a 0700 directory anyway, and one
// rule for every file of the data directory is what the start-up check
// enforces; clients get a copy of ca.crt.
func writePair(certPath, keyPath string, der []byte, priv *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600, nil); err != nil {
		return err
	}
	return atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600, nil)
}

func loadPair(dir string) (tls.Certificate, error) {
	return tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, keyFile))
}
