// Package upstream is how Berth reaches other registries: image import
// and pull-through both build their ggcr calls with it.
//
// It applies the cluster's registry rules (images.config.openshift.io/
// cluster: registrySources and allowedRegistriesForImport) before any
// request, picks credentials from the project's docker-config pull
// secrets, trusts the system pool plus the additionalTrustedCA entry of
// the registry, allows plain HTTP or unverified TLS only for insecure
// registries, paces requests with a token bucket (the reference's 2 per
// second, burst 3) and sends every request through Berth's proxy-aware
// outbound client. It classifies failures into the reference's import
// reasons and tells unavailability apart, for pull-through to serve what
// it has cached.
//
// It leaves to callers: what to fetch (remote.Get, remote.Image,
// remote.Layer with the options of Access.Remote); reading the policy,
// secrets and trusted CAs (Access's functions, so that their caching and
// freshness are the caller's); deciding whether a caller is exempt from
// allowedRegistriesForImport, and adding the integrated registry's own
// host to it, as the reference does; the anonymous retry after a 401
// (AnonymousRetry, WithoutCredentials); turning reasons into statuses or
// conditions; and mirror sets, which Berth does not have.
package upstream
