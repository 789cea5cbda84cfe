package s3_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/s3"
	"github.com/berth-registry/berth/internal/storage/s3/s3test"
)

func cloudFrontDriver(t *testing.T, keyPEM []byte, duration string) (storage.Driver, error) {
	t.Helper()
	if gateway == nil {
		testtoolMissing(t)
	}
	set := gateway.Settings(s3test.Bucket())
	set["cloudFront"] = map[string]any{
		"baseURL": "https://d111111abcdef8.cloudfront.net/", "keypairID": "K2JCJMDEHXQW5F",
		"privateKey": map[string]any{"name": "cloudfront", "key": "private.pem"}, "duration": duration,
	}
	raw, _ := json.Marshal(set)
	secrets := map[string][]byte{}
	if keyPEM != nil {
		secrets[storage.SecretCloudFrontKey] = keyPEM
	}
	return s3.New(context.Background(), storage.Options{Settings: raw, Credentials: s3test.Credentials(), Secrets: secrets})
}

// TestCloudFrontRedirects: with cloudFront, a blob GET redirects to the
// distribution, with a canned policy signed by the key pair that expires
// after the duration; the signature verifies with the public key.
func TestCloudFrontRedirects(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	for name, keyPEM := range map[string][]byte{
		"pkcs1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"pkcs8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	} {
		t.Run(name, func(t *testing.T) {
			d, err := cloudFrontDriver(t, keyPEM, "5m")
			if err != nil {
				t.Fatal(err)
			}
			dgst := digest.FromString("through the CDN")
			raw, err := d.(storage.Redirector).RedirectURL(context.Background(), dgst)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			resource := "https://d111111abcdef8.cloudfront.net/blobs/sha256/" + dgst.Encoded()[:2] + "/" + dgst.Encoded()
			if got := u.Scheme + "://" + u.Host + u.Path; got != resource {
				t.Fatalf("redirect to %s, want %s", got, resource)
			}
			q := u.Query()
			if q.Get("Key-Pair-Id") != "K2JCJMDEHXQW5F" {
				t.Errorf("Key-Pair-Id = %q", q.Get("Key-Pair-Id"))
			}
			expires, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
			if err != nil {
				t.Fatalf("Expires = %q", q.Get("Expires"))
			}
			if left := time.Until(time.Unix(expires, 0)); left < 4*time.Minute || left > 5*time.Minute+time.Second {
				t.Errorf("the URL expires in %v, want 5m", left)
			}
			policy := fmt.Sprintf(`{"Statement":[{"Resource":%q,"Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, resource, expires)
			sig, err := base64.StdEncoding.DecodeString(strings.NewReplacer("-", "+", "_", "=", "~", "/").Replace(q.Get("Signature")))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha1.Sum([]byte(policy))
			if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, sum[:], sig); err != nil {
				t.Errorf("the signature does not verify with the key pair's public key: %v", err)
			}
		})
	}
	if _, err := cloudFrontDriver(t, nil, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("cloudFront without its key: %v, want ErrInvalidArgument", err)
	}
	if _, err := cloudFrontDriver(t, []byte("not a key"), ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("cloudFront with a bad key: %v, want ErrInvalidArgument", err)
	}
}
