package registry

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestBusyUploadIsUnavailableNotARangeError(t *testing.T) {
	b := busySet{m: map[string]time.Time{}}
	release, err := b.acquire("u1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.acquire("u1")
	var e *Error
	if !errors.As(err, &e) || e.Code.Status != http.StatusServiceUnavailable || e.Header.Get("Retry-After") == "" {
		t.Fatalf("second writer got %v, want 503 with Retry-After", err)
	}
	if _, err := b.acquire("u2"); err != nil {
		t.Fatalf("another upload is blocked: %v", err)
	}
	release()
	if _, err := b.acquire("u1"); err != nil {
		t.Fatalf("released upload still busy: %v", err)
	}
}
