package imageregistryv1

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-registry/berth/internal/store"
)

// A proxy URL quoted back in a refusal never carries its password.
func TestInvalidProxyIsRedacted(t *testing.T) {
	c := &Config{Spec: ConfigSpec{Proxy: ProxyConfig{HTTP: "http://user:s3cretpw@proxy:3128 x"}}}
	c.Name = ConfigName
	problems := strings.Join(Validate(c), "\n")
	if !strings.Contains(problems, "spec.proxy.http") || strings.Contains(problems, "s3cretpw") || strings.Contains(problems, "user:") {
		t.Errorf("problems: %s", problems)
	}
}

func TestTooManyRoutes(t *testing.T) {
	c := &Config{}
	c.Name = ConfigName
	for i := range MaxRoutes + 1 {
		c.Spec.Routes = append(c.Spec.Routes, Route{Name: "r" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + strings.Repeat("0", i/26)})
	}
	if p := strings.Join(Validate(c), "\n"); !strings.Contains(p, "spec.routes: Too many: 101") {
		t.Errorf("problems: %s", p)
	}
}

// Credentials in an endpoint URL are refused (they would be logged, shown
// in status and recorded with every blob), and never quoted back.
func TestEndpointWithCredentialsIsRefused(t *testing.T) {
	for _, spec := range []StorageConfig{
		{S3: &S3Storage{Bucket: "b", RegionEndpoint: "https://AKIAKEY:s3cretpw@s3.example.com"}},
		{S3: &S3Storage{Bucket: "b", RegionEndpoint: "https://AKIAKEY:s3cretpw@s3.example.com bad"}},
		{Swift: &SwiftStorage{Container: "c", AuthURL: "https://user:s3cretpw@keystone.example/v3"}},
	} {
		c := &Config{Spec: ConfigSpec{Storage: spec}}
		c.Name = ConfigName
		problems := strings.Join(Validate(c), "\n")
		if !strings.Contains(problems, "Invalid value") || strings.Contains(problems, "s3cretpw") {
			t.Errorf("problems: %s", problems)
		}
	}
}

// S3 settings that cannot take effect are refused when written.
func TestS3SettingsRefused(t *testing.T) {
	for want, s3 := range map[string]*S3Storage{
		"spec.storage.s3.keyID":               {Bucket: "b", KeyID: "arn:aws:kms:k"},
		"spec.storage.s3.cloudFront.baseURL":  {Bucket: "b", CloudFront: &S3CloudFront{BaseURL: "cdn.example.com", KeypairID: "K", PrivateKey: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cf"}, Key: "pk"}}},
		"spec.storage.s3.cloudFront.duration": {Bucket: "b", CloudFront: &S3CloudFront{BaseURL: "https://cdn.example.com", KeypairID: "K", PrivateKey: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cf"}, Key: "pk"}, Duration: metav1.Duration{Duration: -time.Second}}},
	} {
		c := &Config{Spec: ConfigSpec{Storage: StorageConfig{S3: s3}}}
		c.Name = ConfigName
		if problems := strings.Join(Validate(c), "\n"); !strings.Contains(problems, want+": Invalid value") {
			t.Errorf("%s: problems %q", want, problems)
		}
	}
	ok := &Config{Spec: ConfigSpec{Storage: StorageConfig{S3: &S3Storage{Bucket: "b", Encrypt: true, KeyID: "arn:aws:kms:k"}}}}
	ok.Name = ConfigName
	if problems := Validate(ok); len(problems) != 0 {
		t.Errorf("encrypt with a keyID: %v", problems)
	}
}

// spec.imageStreams.tagHistoryLimit is 0 (the default) to 1000.
func TestTagHistoryLimitBounds(t *testing.T) {
	for limit, want := range map[int32]string{
		-1:   "spec.imageStreams.tagHistoryLimit: Invalid value: -1: must be between 0",
		1001: "spec.imageStreams.tagHistoryLimit: Invalid value: 1001: must be between 0",
		0:    "",
		1:    "",
		1000: "",
	} {
		c := &Config{Spec: ConfigSpec{ImageStreams: ImageStreamsConfig{TagHistoryLimit: limit}}}
		c.Name = ConfigName
		problems := strings.Join(Validate(c), "\n")
		if want == "" && problems != "" {
			t.Errorf("limit %d refused: %s", limit, problems)
		}
		if want != "" && !strings.Contains(problems, want) {
			t.Errorf("limit %d: problems %q, want %q", limit, problems, want)
		}
	}
}

// The default limit the API documents is the store's.
func TestDefaultTagHistoryLimitIsTheStores(t *testing.T) {
	if DefaultTagHistoryLimit != store.DefaultTagHistory {
		t.Errorf("DefaultTagHistoryLimit %d, store.DefaultTagHistory %d", DefaultTagHistoryLimit, store.DefaultTagHistory)
	}
}

// Each allowed destination is a CIDR, an address or a host name, as the
// webhook sender reads them; a bad one is refused by its index and value.
func TestAllowedDestinations(t *testing.T) {
	good := []string{"127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1", "hooks.internal.example", "localhost"}
	c := &Config{Spec: ConfigSpec{Webhooks: WebhooksConfig{AllowedDestinations: good}}}
	c.Name = ConfigName
	if problems := Validate(c); len(problems) != 0 {
		t.Errorf("good destinations refused: %v", problems)
	}
	for _, bad := range []string{"10.0.0.0/33", "not a host", "", "fe80::1%eth0", "10.0.0.256", "http://hooks.example"} {
		c.Spec.Webhooks.AllowedDestinations = []string{"127.0.0.1", bad}
		problems := strings.Join(Validate(c), "\n")
		want := fmt.Sprintf("spec.webhooks.allowedDestinations[1]: Invalid value: %q: ", bad)
		// The field path names the entry; the sender's own prefix, which
		// names it too, is not repeated.
		if !strings.Contains(problems, want) || strings.Contains(problems, "[0]") || strings.Contains(problems, "webhook allowed destination") {
			t.Errorf("%q: problems %q, want %q", bad, problems, want)
		}
	}
}
