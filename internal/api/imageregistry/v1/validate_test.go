package imageregistryv1

import (
	"strings"
	"testing"
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
