// Package azure is the blob driver for Azure Blob Storage, on the Azure
// SDK's azblob. docs/STORAGE.md has the design: blobs at
// blobs/<alg>/<xx>/<hex>; each upload session one block blob,
// upload-<id>.data, whose blocks are staged and committed by every append
// (their IDs follow from their numbers, so the state is two numbers), and
// copied block by block from it into the blob at commit. No request path
// lists the container.
package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Settings are spec.storage.azure of the registry Config, mirroring the
// API's type: decoded strictly, a field the API gains that this driver
// does not know is refused, not accepted and ignored.
type Settings struct {
	AccountName   string         `json:"accountName,omitempty"`
	Container     string         `json:"container,omitempty"`
	CloudName     string         `json:"cloudName,omitempty"`
	NetworkAccess *NetworkAccess `json:"networkAccess,omitempty"`
}

// NetworkAccess is spec.storage.azure.networkAccess.
type NetworkAccess struct {
	Type     string         `json:"type,omitempty"`
	Internal map[string]any `json:"internal,omitempty"`
}

// AccountKeyKey is the credentials' key of the storage account's key.
const AccountKeyKey = "REGISTRY_STORAGE_AZURE_ACCOUNTKEY"

// ServiceURLVar names, in the server's environment, a blob service URL
// to use instead of the one the cloud's name gives (an emulator, or an
// Azure Stack endpoint): the parameter CNCF Distribution calls serviceurl.
const ServiceURLVar = "REGISTRY_STORAGE_AZURE_SERVICEURL"

// blobSuffixes are the blob service host suffixes of the Azure clouds, by
// the names the reference's cloudName takes.
var blobSuffixes = map[string]string{
	"":                       "blob.core.windows.net",
	"AzurePublicCloud":       "blob.core.windows.net",
	"AzureUSGovernmentCloud": "blob.core.usgovcloudapi.net",
	"AzureChinaCloud":        "blob.core.chinacloudapi.cn",
	"AzureGermanCloud":       "blob.core.cloudapi.de",
}

const (
	// blockSize is the most bytes one staged block holds: 50,000 blocks
	// (Azure's limit per blob) of it hold 390 GiB. Its buffer grows as
	// the bytes arrive.
	blockSize = 8 << 20
	// maxBlocks is Azure's limit of blocks in one blob.
	maxBlocks = 50_000
	// copyRangeSize is the most bytes one block copied from a URL takes
	// at commit.
	copyRangeSize = 100 << 20
	// redirectLifetime bounds a SAS redirect (as the other drivers').
	redirectLifetime = 20 * time.Minute
	// recoverGrace: Recover leaves leftovers younger than this, longer
	// than a session lives untouched (24 hours).
	recoverGrace = 25 * time.Hour
)

// accountName is the shape of a storage account's name.
var accountName = regexp.MustCompile(`^[a-z0-9]{3,24}$`)

// tryTimeout bounds one request (a block of 8 MiB staged, a 100 MiB range
// copied server-side).
const tryTimeout = 3 * time.Minute

// Driver is the Azure Blob blob driver.
type Driver struct {
	container     *container.Client
	containerName string
	account       string
	// recoverGrace: Recover leaves leftovers younger than this.
	recoverGrace time.Duration
	// copyRangeSize is the most bytes a block copied at commit takes.
	copyRangeSize int64

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
	d, err := newDriver(set, opts)
	if err != nil {
		return nil, err
	}
	if err := d.provision(ctx, opts.Existing); err != nil {
		return nil, err
	}
	return d, nil
}

func newDriver(set Settings, opts storage.Options) (*Driver, error) {
	switch {
	case set.AccountName == "":
		return nil, fmt.Errorf("azure: %w: no accountName (Berth does not create storage accounts)", errdefs.ErrInvalidArgument)
	case !accountName.MatchString(set.AccountName):
		// It becomes the endpoint's host name, and signed requests go there.
		return nil, fmt.Errorf("azure: %w: accountName %q is not a storage account's name (3 to 24 lower-case letters and digits)", errdefs.ErrInvalidArgument, set.AccountName)
	case set.Container == "":
		return nil, fmt.Errorf("azure: %w: no container named", errdefs.ErrInvalidArgument)
	case set.NetworkAccess != nil && set.NetworkAccess.Type == "Internal":
		return nil, fmt.Errorf("azure: %w: networkAccess.type Internal asks for a private endpoint, which Berth does not create: make one for the account and leave the type External", errdefs.ErrInvalidArgument)
	}
	key := opts.Credentials[AccountKeyKey]
	if key == "" {
		return nil, fmt.Errorf("azure: %w: the credentials have no %s (Berth signs requests, copies and redirects with the account's key)", errdefs.ErrInvalidArgument, AccountKeyKey)
	}
	cred, err := azblob.NewSharedKeyCredential(set.AccountName, key)
	if err != nil {
		return nil, fmt.Errorf("azure: %w: %s: %v", errdefs.ErrInvalidArgument, AccountKeyKey, err)
	}
	serviceURL := os.Getenv(ServiceURLVar)
	if serviceURL == "" {
		suffix, ok := blobSuffixes[set.CloudName]
		if !ok {
			return nil, fmt.Errorf("azure: %w: unknown cloudName %q (known: AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud; another endpoint is named by %s)", errdefs.ErrInvalidArgument, set.CloudName, ServiceURLVar)
		}
		serviceURL = "https://" + set.AccountName + "." + suffix + "/"
	}
	if _, err := url.Parse(serviceURL); err != nil {
		return nil, fmt.Errorf("azure: %w: %s: %v", errdefs.ErrInvalidArgument, ServiceURLVar, err)
	}
	httpClient, err := storage.BackendClient(opts.HTTPClient, nil)
	if err != nil {
		return nil, err
	}
	client, err := azblob.NewClientWithSharedKeyCredential(serviceURL, cred, &azblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: httpClient,
		// The SDK's retry policy: exponential backoff with jitter on 408,
		// 429, 5xx and connection errors.
		// Each try is bounded, so that a backend that stalls cannot hold a
		// request (and its session, and its storage's write gate) forever.
		Retry:     policy.RetryOptions{MaxRetries: 4, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 5 * time.Second, TryTimeout: tryTimeout},
		Telemetry: policy.TelemetryOptions{Disabled: true},
	}})
	if err != nil {
		return nil, fmt.Errorf("azure: client: %w", err)
	}
	return &Driver{
		container:     client.ServiceClient().NewContainerClient(set.Container),
		containerName: set.Container,
		account:       set.AccountName,
		recoverGrace:  recoverGrace,
		copyRangeSize: copyRangeSize,
	}, nil
}

// classify maps an Azure error onto the driver errors the registry
// answers by: a missing blob is not found, a bad range an invalid
// argument, a service that answers 5xx, 408 or 429 or does not answer at
// all (after the SDK's retries) unavailable. A missing container,
// refused credentials and the like stay plain errors.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("azure %s: %w", what, err)
	}
	var respErr *azcore.ResponseError
	status := 0
	if errors.As(err, &respErr) {
		status = respErr.StatusCode
	}
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	switch {
	case errors.As(err, &certErr) || errors.As(err, &authErr):
		return fmt.Errorf("azure %s: the endpoint's certificate is not trusted: %w", what, err)
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return fmt.Errorf("azure %s: the container does not exist: %w", what, err)
	case bloberror.HasCode(err, bloberror.BlobNotFound) || status == http.StatusNotFound:
		return fmt.Errorf("azure %s: %w: %v", what, errdefs.ErrNotFound, err)
	case bloberror.HasCode(err, bloberror.InvalidRange) || status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("azure %s: %w: %v", what, errdefs.ErrInvalidArgument, err)
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return fmt.Errorf("azure %s: %w: %v", what, errdefs.ErrUnavailable, err)
	case status == 0 && errors.As(err, &netErr):
		return fmt.Errorf("azure %s: %w: %v", what, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("azure %s: %w", what, err)
}

// Health implements storage.HealthChecker: the container answers.
func (d *Driver) Health(ctx context.Context) error {
	_, err := d.container.GetProperties(ctx, nil)
	return classify(err, "get container "+d.containerName)
}
