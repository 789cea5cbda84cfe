// Package swift is the blob driver for OpenStack Swift, on gophercloud.
// docs/STORAGE.md has the design: blobs at blobs/<alg>/<xx>/<hex>; each
// append of an upload session segments under upload-<id>.seg-<n>; a
// commit joins them with a static large object manifest and copies that,
// flattened, into the blob (a blob above Swift's 5 GiB object limit stays
// a manifest over segments of its own). No request path lists the
// container.
package swift

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/swauth"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Settings are spec.storage.swift of the registry Config, mirroring the
// API's type: decoded strictly, a field the API gains that this driver
// does not know is refused, not accepted and ignored.
type Settings struct {
	AuthURL     string `json:"authURL,omitempty"`
	AuthVersion string `json:"authVersion,omitempty"`
	Container   string `json:"container,omitempty"`
	Domain      string `json:"domain,omitempty"`
	DomainID    string `json:"domainID,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	TenantID    string `json:"tenantID,omitempty"`
	RegionName  string `json:"regionName,omitempty"`
}

// The credentials' keys in the user secret (and the server's environment).
const (
	UsernameKey      = "REGISTRY_STORAGE_SWIFT_USERNAME"
	PasswordKey      = "REGISTRY_STORAGE_SWIFT_PASSWORD"
	AppCredIDKey     = "REGISTRY_STORAGE_SWIFT_APPLICATIONCREDENTIALID"
	AppCredNameKey   = "REGISTRY_STORAGE_SWIFT_APPLICATIONCREDENTIALNAME"
	AppCredSecretKey = "REGISTRY_STORAGE_SWIFT_APPLICATIONCREDENTIALSECRET"
	TokenIDKey       = "REGISTRY_STORAGE_SWIFT_TOKENID"
)

const (
	// maxObjectSize is Swift's largest object (max_file_size): a blob
	// above it stays a static large object.
	maxObjectSize = 5 << 30
	// maxManifestSegments is how many segments one manifest lists
	// (max_manifest_segments); more are listed by manifests of manifests.
	maxManifestSegments = 1000
	// segmentSize is the most bytes one segment holds (each is buffered).
	segmentSize = 8 << 20
	// maxSegments bounds the segments of one session: 781 GiB.
	maxSegments = 100_000
	// requestTimeout bounds a request (a segment written, a commit's
	// steps), so that a backend that stops answering holds nothing
	// forever.
	requestTimeout = 2 * time.Minute
	// redirectLifetime bounds a temp URL redirect (as the other drivers').
	redirectLifetime = 20 * time.Minute
	// recoverGrace: Recover leaves leftovers younger than this.
	recoverGrace = 25 * time.Hour
)

// Driver is the Swift blob driver.
type Driver struct {
	client        *gophercloud.ServiceClient
	containerName string
	// tempURLKey signs redirects ("" when the container has none and
	// Berth may not set one: blobs are streamed). Health reads it again.
	keyMu      sync.Mutex
	tempURLKey string
	// flatLimit is the largest blob copied into one object at commit.
	flatLimit int64
	// manifestSegments is how many segments one manifest lists.
	manifestSegments int
	// recoverGrace: Recover leaves leftovers younger than this.
	recoverGrace time.Duration

	// Findings are what the driver found and did when built.
	objstore.Findings
}

// New builds the driver from opts (storage.Constructor). It checks the
// container and creates it when it is absent.
func New(ctx context.Context, opts storage.Options) (storage.Driver, error) {
	set, err := storage.DecodeSettings[Settings](opts)
	if err != nil {
		return nil, err
	}
	client, err := connect(ctx, set, opts)
	if err != nil {
		return nil, err
	}
	d := &Driver{client: client, containerName: set.Container, flatLimit: maxObjectSize, manifestSegments: maxManifestSegments, recoverGrace: recoverGrace}
	d.readLimits(ctx)
	if err := d.provision(ctx, opts.Existing); err != nil {
		return nil, err
	}
	return d, nil
}

// connect authenticates as the settings and credentials say: TempAuth
// (authVersion 1), or Keystone v2/v3 with a user's password or an
// application credential.
func connect(ctx context.Context, set Settings, opts storage.Options) (*gophercloud.ServiceClient, error) {
	switch {
	case set.AuthURL == "":
		return nil, fmt.Errorf("swift: %w: no authURL", errdefs.ErrInvalidArgument)
	case set.Container == "":
		return nil, fmt.Errorf("swift: %w: no container named", errdefs.ErrInvalidArgument)
	}
	httpClient, err := storage.BackendClient(opts.HTTPClient, opts.TrustedCA)
	if err != nil {
		return nil, err
	}
	pc, err := openstack.NewClient(set.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("swift: %w: authURL: %v", errdefs.ErrInvalidArgument, err)
	}
	pc.HTTPClient = *httpClient
	creds := opts.Credentials
	user, password := creds[UsernameKey], creds[PasswordKey]
	switch set.AuthVersion {
	case "1":
		if user == "" || password == "" {
			return nil, fmt.Errorf("swift: %w: TempAuth (authVersion 1) needs %s and %s", errdefs.ErrInvalidArgument, UsernameKey, PasswordKey)
		}
		authOpts := swauth.AuthOpts{User: user, Key: password}
		client, err := swauth.NewObjectStorageV1(ctx, pc, authOpts)
		if err != nil {
			return nil, fmt.Errorf("swift: authenticate at %s: %w", set.AuthURL, classify(err, "authenticate"))
		}
		// A token expires (or TempAuth's memcached restarts): a request
		// answered 401 authenticates again, through a client of its own
		// (one that would itself re-authenticate on a 401 would wait for
		// the re-authentication under way).
		pc.ReauthFunc = func(ctx context.Context) error {
			auth, err := openstack.NewClient(set.AuthURL)
			if err != nil {
				return err
			}
			auth.HTTPClient = *httpClient
			res, err := swauth.Auth(ctx, auth, authOpts).Extract()
			if err != nil {
				return err
			}
			return pc.SetTokenAndAuthResult(tempAuthToken(res.Token))
		}
		return client, nil
	case "", "2", "3":
	default:
		return nil, fmt.Errorf("swift: %w: authVersion %q is not 1, 2 or 3", errdefs.ErrInvalidArgument, set.AuthVersion)
	}
	// gophercloud picks the identity API by the URL's version (v2.0, v3),
	// or by asking the service: a version named in the settings is named
	// in the URL.
	endpoint := strings.TrimRight(set.AuthURL, "/")
	switch want := map[string]string{"2": "/v2.0", "3": "/v3"}[set.AuthVersion]; {
	case want == "":
	case strings.HasSuffix(endpoint, "/v2.0") || strings.HasSuffix(endpoint, "/v3"):
		if !strings.HasSuffix(endpoint, want) {
			return nil, fmt.Errorf("swift: %w: authVersion %s but authURL %s names another identity API version", errdefs.ErrInvalidArgument, set.AuthVersion, set.AuthURL)
		}
	default:
		endpoint += want
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: endpoint + "/", Username: user, Password: password, TokenID: creds[TokenIDKey],
		DomainName: set.Domain, DomainID: set.DomainID, TenantName: set.Tenant, TenantID: set.TenantID,
		ApplicationCredentialID: creds[AppCredIDKey], ApplicationCredentialName: creds[AppCredNameKey],
		ApplicationCredentialSecret: creds[AppCredSecretKey],
		AllowReauth:                 true,
	}
	if ao.Password == "" && ao.ApplicationCredentialSecret == "" && ao.TokenID == "" {
		return nil, fmt.Errorf("swift: %w: the credentials have none of %s, %s and %s", errdefs.ErrInvalidArgument, PasswordKey, AppCredSecretKey, TokenIDKey)
	}
	if err := openstack.Authenticate(ctx, pc, ao); err != nil {
		return nil, fmt.Errorf("swift: authenticate at %s: %w", set.AuthURL, classify(err, "authenticate"))
	}
	client, err := openstack.NewObjectStorageV1(pc, gophercloud.EndpointOpts{Region: set.RegionName})
	if err != nil {
		return nil, fmt.Errorf("swift: find the object storage endpoint (region %q): %w", set.RegionName, err)
	}
	return client, nil
}

// readLimits takes the cluster's largest object and manifest size from
// its /info (the proxy's root, beside /v1), when it publishes them and
// they are below Swift's defaults: a commit then keeps under them
// (swift.TestClusterLimits).
func (d *Driver) readLimits(ctx context.Context) {
	u, err := url.Parse(d.client.Endpoint)
	if err != nil {
		return
	}
	i := strings.Index(u.Path, "/v1/")
	if i < 0 {
		return
	}
	u.Path, u.RawQuery = u.Path[:i]+"/info", ""
	var info struct {
		Swift struct {
			MaxFileSize int64 `json:"max_file_size"`
		} `json:"swift"`
		SLO struct {
			MaxManifestSegments int `json:"max_manifest_segments"`
		} `json:"slo"`
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := d.client.ProviderClient.Request(ctx, http.MethodGet, u.String(), &gophercloud.RequestOpts{JSONResponse: &info, OkCodes: []int{http.StatusOK}}); err != nil {
		return // an older or locked-down cluster: Swift's defaults
	}
	if n := info.Swift.MaxFileSize; n > segmentSize && n < d.flatLimit {
		d.flatLimit = n
	}
	if n := info.SLO.MaxManifestSegments; n > 1 && n < d.manifestSegments {
		d.manifestSegments = n
	}
}

// tempAuthToken is a TempAuth token as gophercloud records an
// authentication's result.
type tempAuthToken string

func (t tempAuthToken) ExtractTokenID() (string, error) { return string(t), nil }

// classify maps a Swift error onto the driver errors the registry answers
// by: a missing object is not found, a bad range an invalid argument, a
// service that answers 5xx, 408 or 429 or does not answer at all
// unavailable. Refused credentials and the like stay plain errors.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("swift %s: %w", what, err)
	}
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) && reauth.ErrReauth != nil {
		// No new token: as unavailable as the identity service is.
		return classify(reauth.ErrReauth, what+" (authenticating again)")
	}
	status := responseStatus(err)
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	switch {
	case errors.As(err, &certErr) || errors.As(err, &authErr):
		return fmt.Errorf("swift %s: the endpoint's certificate is not trusted (spec.storage.swift has no trustedCA; use the system's roots): %w", what, err)
	case status == http.StatusNotFound:
		return fmt.Errorf("swift %s: %w: %v", what, errdefs.ErrNotFound, err)
	case status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("swift %s: %w: %v", what, errdefs.ErrInvalidArgument, err)
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return fmt.Errorf("swift %s: %w: %v", what, errdefs.ErrUnavailable, err)
	case status == 0 && errors.As(err, &netErr):
		return fmt.Errorf("swift %s: %w: %v", what, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("swift %s: %w", what, err)
}

// responseStatus is the HTTP status Swift answered err with (0 for none).
func responseStatus(err error) int {
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &unexpected) {
		return unexpected.Actual
	}
	var p *gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &p) {
		return p.Actual
	}
	return 0
}

// Health implements storage.HealthChecker: the container answers. It
// takes the container's temp URL key again (another instance, or the
// cloud's operator, may have changed it).
func (d *Driver) Health(ctx context.Context) error {
	hdr, err := containers.Get(ctx, d.client, d.containerName, nil).Extract()
	if err != nil {
		return classify(err, "get container "+d.containerName)
	}
	d.setTempURLKey(hdr.TempURLKey)
	return nil
}

func (d *Driver) setTempURLKey(key string) {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	d.tempURLKey = key
}

func (d *Driver) currentTempURLKey() string {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	return d.tempURLKey
}

func randomKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
