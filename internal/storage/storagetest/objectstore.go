package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Bucket is an object-storage driver under test, with the hooks its
// package's tests export: writing and listing objects as someone else
// would, and Recover's grace.
type Bucket interface {
	storage.Driver
	storage.Recoverer
	Put(ctx context.Context, name string, b []byte) error
	Names(ctx context.Context, prefix string) ([]string, error)
	SetRecoverGrace(time.Duration)
}

// RunObjectStore runs the cases every object-storage driver shares, on
// drivers made by newDriver, each in a bucket of its own that the driver
// created.
func RunObjectStore(t *testing.T, newDriver func(t *testing.T) Bucket) {
	t.Run("ClientHangsUpMidBody", func(t *testing.T) { testClientHangsUp(t, newDriver(t)) })
	t.Run("Recover", func(t *testing.T) { testRecover(t, newDriver(t)) })
	t.Run("Destroy", func(t *testing.T) { testDestroy(t, newDriver(t), newDriver(t)) })
}

// testClientHangsUp: what a client sent before it went away is kept, in
// a context that is cancelled meanwhile, and its error is returned; the
// client's next append goes on from there.
func testClientHangsUp(t *testing.T, d Bucket) {
	content := RandomBytes(t, 9<<20+123)
	ctx, cancel := context.WithCancel(context.Background())
	r := HangingUp(bytes.NewReader(content[:5<<20]), io.ErrUnexpectedEOF)
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	n, st, err := d.Append(ctx, storage.Upload{ID: "hangup1"}, 0, r)
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != 5<<20 {
		t.Fatalf("Append = %d, %v; want %d and the client's error", n, err, 5<<20)
	}
	u := storage.Upload{ID: "hangup1", State: st}
	n, st, err = d.Append(context.Background(), u, 5<<20, bytes.NewReader(content[5<<20:]))
	if err != nil || n != int64(len(content))-5<<20 {
		t.Fatalf("the client's next append: %d, %v", n, err)
	}
	u.State = st
	dgst := digest.FromBytes(content)
	if err := d.Commit(context.Background(), u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
}

// testRecover: objects of sessions the store no longer has go, once older
// than the grace; a live session's, and objects not of Berth's shape,
// stay.
func testRecover(t *testing.T, d Bucket) {
	ctx := context.Background()
	AppendChunks(t, d, storage.Upload{ID: "dead1"}, RandomBytes(t, 100), 100)
	AppendChunks(t, d, storage.Upload{ID: "live1"}, RandomBytes(t, 100), 100)
	if err := d.Put(ctx, "upload-notours", []byte("x")); err != nil {
		t.Fatal(err)
	}
	live := func(id string) bool { return id == "live1" }
	if err := d.Recover(ctx, live); err != nil {
		t.Fatal(err)
	}
	if names, _ := d.Names(ctx, "upload-dead1."); len(names) == 0 {
		t.Error("Recover removed a leftover younger than the grace")
	}
	d.SetRecoverGrace(0)
	if err := d.Recover(ctx, live); err != nil {
		t.Fatal(err)
	}
	names, err := d.Names(ctx, "upload-")
	if err != nil {
		t.Fatal(err)
	}
	var lives, ours int
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "upload-live1."):
			lives++
		case n == "upload-notours":
			ours++
		default:
			t.Errorf("Recover left %s", n)
		}
	}
	if lives == 0 || ours != 1 {
		t.Errorf("after Recover: %v; want the live session's objects and upload-notours", names)
	}
}

// testDestroy: a bucket the driver created goes with Berth's objects, and
// only with its token; one holding others' objects is kept, with them.
func testDestroy(t *testing.T, d, other Bucket) {
	ctx := context.Background()
	destroyer, ok := d.(storage.Destroyer)
	if !ok {
		t.Fatalf("%T is no storage.Destroyer", d)
	}
	token := d.(storage.Provisioner).ProvisionToken()
	if token == "" {
		t.Fatal("no provision token for a bucket the driver created")
	}
	content := RandomBytes(t, 100)
	u := AppendChunks(t, d, storage.Upload{ID: "destroy1"}, content, 100)
	if err := d.Commit(ctx, u, digest.FromBytes(content), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := destroyer.Destroy(ctx, "not-the-token"); !errors.Is(err, storage.ErrNotProvisioned) {
		t.Fatalf("Destroy with another token: %v", err)
	}
	what, err := destroyer.Destroy(ctx, token)
	if err != nil || !strings.Contains(what, "deleted") {
		t.Fatalf("Destroy = %q, %v", what, err)
	}
	if err := d.(storage.HealthChecker).Health(ctx); err == nil {
		t.Error("the bucket answers after Destroy")
	}
	if err := other.Put(ctx, "someone-elses", []byte("x")); err != nil {
		t.Fatal(err)
	}
	what, err = other.(storage.Destroyer).Destroy(ctx, other.(storage.Provisioner).ProvisionToken())
	if err != nil || !strings.Contains(what, "kept") {
		t.Fatalf("Destroy of a bucket holding others' objects = %q, %v", what, err)
	}
	if names, _ := other.Names(ctx, "someone-elses"); len(names) != 1 {
		t.Error("Destroy removed an object Berth did not write")
	}
}

// RunBackendGoesAway: with its backend stopped, d's health and reads fail
// as unavailable; once the backend is back, the same driver works again.
func RunBackendGoesAway(t *testing.T, d storage.Driver, stop func(), restart func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hc := d.(storage.HealthChecker)
	stop()
	if err := hc.Health(ctx); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Health with the backend down: %v, want ErrUnavailable", err)
	}
	if _, err := d.Open(ctx, digest.FromString("x"), 0, -1); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Open with the backend down: %v, want ErrUnavailable", err)
	}
	if err := restart(); err != nil {
		t.Fatal(err)
	}
	if err := hc.Health(ctx); err != nil {
		t.Errorf("Health after the backend came back: %v", err)
	}
	content := RandomBytes(t, 100)
	u := AppendChunks(t, d, storage.Upload{ID: "back1"}, content, 100)
	if err := d.Commit(ctx, u, digest.FromBytes(content), 100); err != nil {
		t.Fatal(err)
	}
}
