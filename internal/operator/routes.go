package operator

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	routev1 "github.com/berth-registry/berth/internal/api/route/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// RouteOptions say how the registry's routes (spec.defaultRoute,
// spec.routes) are exposed.
type RouteOptions struct {
	// BaseDomain names the hosts of routes that give none:
	// default-route-openshift-image-registry.<BaseDomain> and
	// <name>-openshift-image-registry.<BaseDomain>. Without one the
	// default route is localhost, the one name every client resolves to
	// this machine without DNS, and other routes use the domain localhost.
	BaseDomain string
	// Port is the port clients reach the registry at: a route's spec.host
	// carries it, unless it is 443 (or 0, unknown).
	Port int
	// CA issues the certificates of routes without a secret of their own;
	// nil when the registry serves plain HTTP, where no certificate applies.
	CA CA
	// CAHosts are the names besides BaseDomain's and localhost's that the
	// CA may issue for (the serving certificate's: the host name,
	// --tls-host). Clients trust the CA, so it must not vouch for names
	// the registry does not own: a route elsewhere brings its own secret.
	CAHosts []string
}

// mayIssue says whether Berth's CA may issue a certificate for host.
func (ro RouteOptions) mayIssue(host string) bool {
	under := func(domain string) bool {
		return domain != "" && (host == domain || strings.HasSuffix(host, "."+domain))
	}
	if under(localDomain) || under(strings.ToLower(ro.BaseDomain)) {
		return true
	}
	for _, h := range ro.CAHosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// CA issues certificates for route hosts from Berth's CA (*pki.Source).
type CA interface {
	HostCertificates(hosts []string) (map[string]*tls.Certificate, error)
}

// localDomain is the base domain of hostless routes without --base-domain
// (RFC 6761: names under localhost are this machine's).
const localDomain = "localhost"

// RouteKey is where a route's Route object is stored.
func RouteKey(name string) store.ObjectKey {
	return store.ObjectKey{Group: routev1.GroupName, Resource: "routes", Namespace: imageregistryv1.Namespace, Name: name}
}

// imageConfigKey is the cluster image settings, whose status lists the
// registry's external host names.
var imageConfigKey = store.ObjectKey{Group: "config.openshift.io", Resource: "images", Name: imageregistryv1.ConfigName}

// alternateSecretProject is where the reference's documentation creates a
// route's secret (`-n image-registry`), though its operator reads it from
// openshift-image-registry: a secret found there is named in the fix.
const alternateSecretProject = "image-registry"

// route is one route of the spec as the operator resolved it.
type route struct {
	name, host, secret string
	served             bool
	cert               *tls.Certificate // nil: the serving certificate (or plain HTTP)
	reason, message    string           // the Admitted condition's, when not served (and notes when served)
	problem            string           // for Degraded, "" when none
}

// parsedSecret is a route secret as last read: parsed once per
// resourceVersion, not at each pass.
type parsedSecret struct {
	rv   int64
	cert *tls.Certificate
	err  error
}

// resolveRoutes works out the spec's routes: their hosts and
// certificates, and what keeps any of them from being served.
func (o *Operator) resolveRoutes(ctx context.Context, spec imageregistryv1.ConfigSpec) []route {
	var routes []route
	if spec.ManagementState == imageregistryv1.Removed {
		return nil // the reference removes the routes with the registry
	}
	if spec.DefaultRoute {
		host := localDomain
		if o.opts.Routes.BaseDomain != "" {
			host = imageregistryv1.DefaultRouteName + "-" + imageregistryv1.Namespace + "." + o.opts.Routes.BaseDomain
		}
		routes = append(routes, route{name: imageregistryv1.DefaultRouteName, host: host})
	}
	for _, r := range spec.Routes {
		host := strings.ToLower(r.Hostname)
		if host == "" {
			domain := o.opts.Routes.BaseDomain
			if domain == "" {
				domain = localDomain
			}
			host = r.Name + "-" + imageregistryv1.Namespace + "." + domain
		}
		routes = append(routes, route{name: r.Name, host: host, secret: r.SecretName})
	}
	seen := map[string]string{}
	var fromCA []string
	for i := range routes {
		r := &routes[i]
		if msgs := validation.IsDNS1123Subdomain(r.host); len(msgs) > 0 {
			r.refuse("InvalidHost", fmt.Sprintf("the host %q made from its name is not a host name (%s): give it a hostname", r.host, strings.Join(msgs, "; ")))
			continue
		}
		if other, dup := seen[r.host]; dup {
			r.refuse("HostAlreadyClaimed", fmt.Sprintf("host %s is already the host of route %s", r.host, other))
			continue
		}
		seen[r.host] = r.name
		r.served = true
		if o.opts.Routes.CA == nil {
			r.message = "served over plain HTTP (berth serve --insecure-http): certificates do not apply"
			if r.secret != "" {
				r.message += fmt.Sprintf("; secret %q is not read", r.secret)
			}
			continue
		}
		if r.secret == "" {
			if !o.opts.Routes.mayIssue(r.host) {
				r.refuse("CertificateNotIssued", fmt.Sprintf("Berth's CA issues certificates only for names under --base-domain (%s) and localhost and for the serving certificate's names; give route %s a secretName with a certificate for %s",
					orNone(o.opts.Routes.BaseDomain), r.name, r.host))
				continue
			}
			r.message = "served with a certificate from Berth's CA"
			fromCA = append(fromCA, r.host)
			continue
		}
		o.secretCertificate(ctx, r)
	}
	o.forgetSecrets(routes)
	if len(fromCA) > 0 {
		certs, err := o.opts.Routes.CA.HostCertificates(fromCA)
		for i := range routes {
			r := &routes[i]
			if !r.served || r.secret != "" {
				continue
			}
			if err != nil {
				r.refuse("CertificateNotIssued", fmt.Sprintf("no certificate from Berth's CA: %v", err))
				continue
			}
			r.cert = certs[r.host]
		}
	}
	return routes
}

// refuse marks r as not served, for reason.
func (r *route) refuse(reason, message string) {
	r.served, r.cert, r.reason, r.message = false, nil, reason, message
	r.problem = fmt.Sprintf("route %s: %s", r.name, message)
}

// secretCertificate sets r's certificate from its secret in
// openshift-image-registry, or refuses r saying what is wrong with it.
func (o *Operator) secretCertificate(ctx context.Context, r *route) {
	key := store.ObjectKey{Resource: "secrets", Namespace: imageregistryv1.Namespace, Name: r.secret}
	rec, err := o.opts.Store.GetObject(ctx, key)
	if errors.Is(err, errdefs.ErrNotFound) {
		msg := fmt.Sprintf("secret %q not found in project %s", r.secret, imageregistryv1.Namespace)
		alt := key
		alt.Namespace = alternateSecretProject
		if _, err := o.opts.Store.GetObject(ctx, alt); err == nil {
			// Any user may own that project: the message points at the
			// command with the administrator's own certificate files, never
			// at copying what is there.
			msg += fmt.Sprintf("; a secret of that name is in project %s (a project any user may have created), but the registry reads route secrets only from %s: create it there from your certificate files (berth create secret tls %s -n %s --cert=tls.crt --key=tls.key)",
				alternateSecretProject, imageregistryv1.Namespace, r.secret, imageregistryv1.Namespace)
		}
		r.refuse("SecretNotFound", msg)
		return
	}
	if err != nil {
		r.refuse("SecretNotRead", fmt.Sprintf("secret %q: %v", r.secret, err))
		return
	}
	parsed, ok := o.secrets[key]
	if !ok || parsed.rv != rec.ResourceVersion {
		parsed = parseTLSSecret(rec)
		o.secrets[key] = parsed
	}
	if parsed.err != nil {
		r.refuse("InvalidCertificate", fmt.Sprintf("secret %q in %s: %v", r.secret, imageregistryv1.Namespace, parsed.err))
		return
	}
	leaf := parsed.cert.Leaf
	if err := leaf.VerifyHostname(r.host); err != nil {
		r.refuse("HostNotCovered", fmt.Sprintf("the certificate of secret %q does not cover host %s (it is for %s)", r.secret, r.host, strings.Join(certNames(leaf.DNSNames, leaf.IPAddresses), ", ")))
		return
	}
	r.cert = parsed.cert
	r.message = fmt.Sprintf("served with the certificate of secret %q", r.secret)
	if now := o.opts.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		// Served all the same: the default certificate would not do better,
		// and replacing the secret fixes it live.
		r.message = fmt.Sprintf("the certificate of secret %q is valid from %s to %s only", r.secret, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		r.problem = fmt.Sprintf("route %s: %s", r.name, r.message)
	}
}

// forgetSecrets drops parsed secrets no route names any more.
func (o *Operator) forgetSecrets(routes []route) {
	for key := range o.secrets {
		if !slices.ContainsFunc(routes, func(r route) bool { return r.secret == key.Name }) {
			delete(o.secrets, key)
		}
	}
}

// parseTLSSecret reads a kubernetes.io/tls secret's certificate and key.
func parseTLSSecret(rec store.Object) parsedSecret {
	p := parsedSecret{rv: rec.ResourceVersion}
	var s corev1.Secret
	if err := json.Unmarshal(rec.Body, &s); err != nil {
		p.err = fmt.Errorf("not a readable Secret: %w", err)
		return p
	}
	if s.Type != corev1.SecretTypeTLS {
		p.err = fmt.Errorf("of type %s, not %s (berth create secret tls NAME --cert=FILE --key=FILE)", s.Type, corev1.SecretTypeTLS)
		return p
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		p.err = fmt.Errorf("%s and %s must both be set", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
		return p
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		// crypto/tls's messages name what is wrong, never the key's bytes.
		p.err = fmt.Errorf("%s and %s are not a certificate and its key: %w", corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
		return p
	}
	p.cert = &cert
	return p
}

func certNames(dns []string, ips []net.IP) []string {
	names := slices.Clone(dns)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return []string{"no host name"}
	}
	return names
}

// servedRoutes are the routes of the snapshot: those served, default
// route first.
func servedRoutes(routes []route) []settings.Route {
	var out []settings.Route
	for _, r := range routes {
		if r.served {
			out = append(out, settings.Route{Name: r.name, Host: r.host, Certificate: r.cert})
		}
	}
	return out
}

// hostPort is how clients name a route's host: with the port, unless it
// is HTTPS's own.
func (o *Operator) hostPort(host string) string {
	if p := o.opts.Routes.Port; p != 0 && p != 443 {
		return net.JoinHostPort(host, strconv.Itoa(p))
	}
	return host
}

// routeProblems are the Degraded messages of routes.
func routeProblems(routes []route) []string {
	var out []string
	for _, r := range routes {
		if r.problem != "" {
			out = append(out, r.problem)
		}
	}
	return out
}

// publishRoutes makes the Route objects say what is served: one per
// route of the spec, owned by the operator, and none for routes gone;
// and lists the served hosts in the cluster image settings' status.
func (o *Operator) publishRoutes(ctx context.Context, routes []route) error {
	recs, _, _, err := o.opts.Store.ListObjects(ctx, store.ObjectQuery{Group: routev1.GroupName, Resource: "routes", Namespace: imageregistryv1.Namespace})
	if err != nil {
		return fmt.Errorf("list Routes: %w", err)
	}
	existing := map[string]store.Object{}
	for _, rec := range recs {
		existing[rec.Name] = rec
	}
	var errs []error
	for _, r := range routes {
		if err := o.writeRoute(ctx, r, existing); err != nil {
			errs = append(errs, err)
		}
		delete(existing, r.name)
	}
	for _, rec := range existing {
		var old routev1.Route
		if json.Unmarshal(rec.Body, &old) == nil && old.Annotations[routev1.OwnerAnnotation] != "true" {
			continue
		}
		if _, err := o.opts.Store.DeleteObject(ctx, rec.ObjectKey, rec.ResourceVersion, ""); err != nil &&
			!errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrConflict) {
			errs = append(errs, fmt.Errorf("delete Route %s: %w", rec.Name, err))
		}
	}
	if err := o.publishHostnames(ctx, routes); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeRoute creates or updates r's Route object, keeping its identity
// and its condition's transition time while the condition stands.
func (o *Operator) writeRoute(ctx context.Context, r route, existing map[string]store.Object) error {
	weight := int32(100)
	host := o.hostPort(r.host)
	want := routev1.Route{
		TypeMeta: metav1.TypeMeta{APIVersion: routev1.GroupName + "/v1", Kind: "Route"},
		ObjectMeta: metav1.ObjectMeta{
			Name: r.name, Namespace: imageregistryv1.Namespace,
			Annotations: map[string]string{routev1.OwnerAnnotation: "true"},
		},
		Spec: routev1.RouteSpec{
			Host:           host,
			To:             routev1.RouteTargetReference{Kind: "Service", Name: routev1.ServiceName, Weight: &weight},
			WildcardPolicy: "None",
		},
	}
	if o.opts.Routes.CA != nil {
		want.Spec.TLS = &routev1.TLSConfig{Termination: routev1.TerminationReencrypt}
	}
	admitted := routev1.RouteIngressCondition{Type: routev1.ConditionAdmitted, Status: "True", Message: r.message}
	if !r.served {
		admitted.Status, admitted.Reason = "False", r.reason
	}
	now := metav1.NewTime(o.opts.Now().UTC().Truncate(time.Second))
	admitted.LastTransitionTime = &now
	want.Status.Ingress = []routev1.RouteIngress{{Host: host, RouterName: routev1.RouterName, WildcardPolicy: "None",
		Conditions: []routev1.RouteIngressCondition{admitted}}}

	rec, found := existing[r.name]
	if !found {
		want.UID = typesUID()
		want.CreationTimestamp = now
		body, err := json.Marshal(want)
		if err != nil {
			return err
		}
		_, err = o.opts.Store.CreateObject(ctx, store.Object{ObjectKey: RouteKey(r.name), UID: string(want.UID), Created: now.Time, Body: body})
		if err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
			return fmt.Errorf("create Route %s: %w", r.name, err)
		}
		return nil
	}
	var old routev1.Route
	if err := json.Unmarshal(rec.Body, &old); err != nil {
		return fmt.Errorf("decode Route %s: %w", r.name, err)
	}
	want.UID, want.CreationTimestamp = old.UID, old.CreationTimestamp
	if len(old.Status.Ingress) == 1 && len(old.Status.Ingress[0].Conditions) == 1 {
		if c := old.Status.Ingress[0].Conditions[0]; c.Status == admitted.Status && c.LastTransitionTime != nil {
			want.Status.Ingress[0].Conditions[0].LastTransitionTime = c.LastTransitionTime
		}
	}
	body, err := json.Marshal(want)
	if err != nil {
		return err
	}
	if string(body) == string(rec.Body) {
		return nil
	}
	rec.Body, rec.UID = body, string(want.UID)
	if _, err := o.opts.Store.UpdateObject(ctx, rec, rec.ResourceVersion); err != nil &&
		!errors.Is(err, errdefs.ErrConflict) && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("update Route %s: %w", r.name, err)
	}
	return nil
}

// publishHostnames sets status.externalRegistryHostnames of the cluster
// image settings as the reference's operator does: the hosts served, the
// default route's first, the others sorted. The rest of the object is
// left as it is.
func (o *Operator) publishHostnames(ctx context.Context, routes []route) error {
	var first string
	var hosts []string
	for _, r := range routes {
		switch {
		case !r.served:
		case r.name == imageregistryv1.DefaultRouteName:
			first = o.hostPort(r.host)
		default:
			hosts = append(hosts, o.hostPort(r.host))
		}
	}
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	if first != "" {
		hosts = append([]string{first}, hosts...)
	}
	rec, err := o.opts.Store.GetObject(ctx, imageConfigKey)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil // deleted: it comes back at the next start
	}
	if err != nil {
		return fmt.Errorf("read the cluster image settings: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body, &doc); err != nil {
		return fmt.Errorf("decode the cluster image settings: %w", err)
	}
	status, _ := doc["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
	}
	var have []string
	if list, ok := status["externalRegistryHostnames"].([]any); ok {
		for _, h := range list {
			s, _ := h.(string)
			have = append(have, s)
		}
	}
	if slices.Equal(have, hosts) {
		return nil
	}
	if len(hosts) == 0 {
		delete(status, "externalRegistryHostnames")
	} else {
		status["externalRegistryHostnames"] = hosts
	}
	doc["status"] = status
	if len(status) == 0 {
		delete(doc, "status")
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	rec.Body = body
	if _, err := o.opts.Store.UpdateObject(ctx, rec, rec.ResourceVersion); err != nil &&
		!errors.Is(err, errdefs.ErrConflict) && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("write the cluster image settings' status: %w", err)
	}
	return nil
}

// routesFingerprint tells snapshots' routes apart: names, hosts and which
// certificate (its hash; certificates are public, keys are not read).
func routesFingerprint(routes []settings.Route) string {
	var b strings.Builder
	for _, r := range routes {
		id := "none"
		if r.Certificate != nil && len(r.Certificate.Certificate) > 0 {
			sum := sha256.Sum256(r.Certificate.Certificate[0])
			id = hex.EncodeToString(sum[:8])
		}
		fmt.Fprintf(&b, "%s=%s/%s;", r.Name, r.Host, id)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none given"
	}
	return s
}
