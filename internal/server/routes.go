package server

import (
	"crypto/tls"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/settings"
)

// routeCertificates chooses a handshake's certificate by the name the
// client asked for (SNI): a route's of the settings in effect, else the
// serving certificate. A removed route's host, like any name Berth does
// not serve, gets the serving certificate, which a verifying client
// refuses for that name: the handshake itself is not refused, so clients
// that reach Berth by an address or an unlisted name with verification
// off keep working.
func routeCertificates(current *settings.Holder, serving func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if r := current.Load().RouteFor(hello.ServerName); r != nil && r.Certificate != nil {
			return r.Certificate, nil
		}
		return serving(hello)
	}
}

// checkBaseDomain refuses a --base-domain that cannot end a host name
// (the default route's, the longest Berth makes from it).
func checkBaseDomain(domain string) error {
	if domain == "" {
		return nil
	}
	host := imageregistryv1.DefaultRouteName + "-" + imageregistryv1.Namespace + "." + domain
	if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return fmt.Errorf("--base-domain %q: %s is not a host name: %s", domain, host, strings.Join(msgs, "; "))
	}
	return nil
}
