package s3

import (
	"bytes"
	"crypto/rsa"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// cloudFront signs URLs of a CloudFront distribution whose origin is the
// bucket: blob GETs redirect there (canned policy, valid for duration).
type cloudFront struct {
	baseURL  string
	signer   *sign.URLSigner
	duration time.Duration
}

func newCloudFront(cf *CloudFront, secrets map[string][]byte) (*cloudFront, error) {
	if cf == nil {
		return nil, nil
	}
	if cf.BaseURL == "" || cf.KeypairID == "" {
		return nil, fmt.Errorf("s3: %w: cloudFront needs baseURL and keypairID", errdefs.ErrInvalidArgument)
	}
	duration := redirectLifetime
	if cf.Duration != "" {
		d, err := time.ParseDuration(cf.Duration)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("s3: %w: cloudFront duration %q", errdefs.ErrInvalidArgument, cf.Duration)
		}
		if d > 0 {
			duration = d
		}
	}
	pem, ok := secrets[storage.SecretCloudFrontKey]
	if !ok {
		return nil, fmt.Errorf("s3: %w: cloudFront names a private key that was not given", errdefs.ErrInvalidArgument)
	}
	key, err := parseRSAKey(pem)
	if err != nil {
		return nil, fmt.Errorf("s3: %w: cloudFront private key: %v", errdefs.ErrInvalidArgument, err)
	}
	return &cloudFront{baseURL: strings.TrimRight(cf.BaseURL, "/"), signer: sign.NewURLSigner(cf.KeypairID, key), duration: duration}, nil
}

// parseRSAKey reads a PEM RSA private key, PKCS #1 or PKCS #8 (CloudFront
// key pairs are RSA).
func parseRSAKey(pem []byte) (*rsa.PrivateKey, error) {
	if key, err := sign.LoadPEMPrivKey(bytes.NewReader(pem)); err == nil {
		return key, nil
	}
	k, err := sign.LoadPEMPrivKeyPKCS8(bytes.NewReader(pem))
	if err != nil {
		return nil, fmt.Errorf("neither a PKCS #1 nor a PKCS #8 PEM key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA key", k)
	}
	return key, nil
}

// url is the signed URL of key.
func (c *cloudFront) url(key string, now time.Time) (string, error) {
	u, err := c.signer.Sign(c.baseURL+"/"+key, now.Add(c.duration))
	if err != nil {
		return "", fmt.Errorf("sign a CloudFront URL: %w", err)
	}
	return u, nil
}
