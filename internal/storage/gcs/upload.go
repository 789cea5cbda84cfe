package gcs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"net/http"

	gstorage "cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"github.com/opencontainers/go-digest"
	"google.golang.org/api/iterator"
	raw "google.golang.org/api/storage/v1"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// uploadState is what the driver keeps about an upload between requests:
// three numbers, since every PATCH rewrites it. The session's bytes are,
// in order, the head object (parts 1..Head composed into one) and the
// parts after it up to Next-1. Every recorded object is immutable: an
// append writes part Next, which no recorded state includes, and a head
// is composed from recorded parts only.
type uploadState struct {
	// Next is the number of the next part to write (from 1). A part with
	// this number or higher is left over from an append never recorded:
	// it is overwritten, or left out of the commit.
	Next int32 `json:"n"`
	// Head is the last part the head object holds (0: there is none).
	Head int32 `json:"h,omitempty"`
	// Size is how many bytes the session holds.
	Size int64 `json:"z"`
}

// maxPart bounds part numbers (a session of a billion appends is not a
// registry's).
const maxPart = 1 << 30

func decodeState(b []byte) (uploadState, error) {
	st := uploadState{Next: 1}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Next < 1 || st.Next > maxPart || st.Head < 0 || st.Head >= st.Next || st.Size < 0 {
		return st, fmt.Errorf("gcs upload state %q: %w", b, errdefs.ErrInvalidArgument)
	}
	return st, nil
}

func (st uploadState) encode() []byte {
	b, _ := json.Marshal(st) // a struct of numbers
	return b
}

// sources are the objects that hold the session's bytes, in order.
func (st uploadState) sources(prefix string) []string {
	var names []string
	if st.Head > 0 {
		names = append(names, headName(prefix, st.Head))
	}
	for n := st.Head + 1; n < st.Next; n++ {
		names = append(names, partName(prefix, n))
	}
	return names
}

func partName(prefix string, n int32) string { return prefix + "part-" + strconv.Itoa(int(n)) }
func headName(prefix string, n int32) string { return prefix + "head-" + strconv.Itoa(int(n)) }

// Append implements storage.Ingester: the bytes become one object, part
// Next. When the session already has as many objects as one compose
// joins, they are first composed into a new head.
func (d *Driver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return 0, u.State, err
	}
	st, err := decodeState(u.State)
	if err != nil {
		return 0, u.State, err
	}
	if offset > st.Size {
		return 0, u.State, fmt.Errorf("append to upload %s at %d: %w: it holds %d bytes", u.ID, offset, errdefs.ErrInvalidArgument, st.Size)
	}
	if offset < st.Size {
		// A caller that recorded fewer bytes than the state holds: the
		// excess is cut from the last part, which is rewritten with the
		// bytes it keeps ahead of the new ones.
		return d.appendOverLastPart(ctx, u, prefix, st, offset, r)
	}
	if len(st.sources(prefix)) >= maxSources {
		if st, err = d.merge(ctx, prefix, st); err != nil {
			return 0, u.State, err
		}
	}
	n, clientErr, err := d.writePart(ctx, partName(prefix, st.Next), nil, r)
	if err != nil {
		return 0, u.State, err
	}
	if n > 0 {
		st.Next++
		st.Size += n
	}
	return n, st.encode(), clientErr
}

// appendOverLastPart appends r at offset, inside the last part of st.
// Offsets further back are refused: parts before the last cannot be cut.
func (d *Driver) appendOverLastPart(ctx context.Context, u storage.Upload, prefix string, st uploadState, offset int64, r io.Reader) (int64, []byte, error) {
	refuse := fmt.Errorf("append to upload %s at %d: %w: it holds %d bytes, and only its last part can be cut", u.ID, offset, errdefs.ErrInvalidArgument, st.Size)
	if st.Next-1 <= st.Head {
		return 0, u.State, refuse
	}
	last := partName(prefix, st.Next-1)
	attrs, err := d.bucket.Object(last).Attrs(ctx)
	if err != nil {
		return 0, u.State, classify(err, "get "+last)
	}
	start := st.Size - attrs.Size
	if offset < start {
		return 0, u.State, refuse
	}
	kept := offset - start
	var head io.Reader = bytes.NewReader(nil)
	if kept > 0 {
		rc, err := d.bucket.Object(last).NewRangeReader(ctx, 0, kept)
		if err != nil {
			return 0, u.State, classify(err, "read "+last)
		}
		defer rc.Close()
		head = rc
	}
	n, clientErr, err := d.writePart(ctx, last, head, r)
	if err != nil {
		return 0, u.State, err
	}
	if n < kept {
		return 0, u.State, fmt.Errorf("append to upload %s: %s gave %d of its first %d bytes", u.ID, last, n, kept)
	}
	st.Size = offset + n - kept
	return n - kept, st.encode(), clientErr
}

// writeTimeout bounds the write of what a client sent before it went
// away (the request's context is cancelled by then).
const writeTimeout = 2 * time.Minute

// writePart streams before (bytes of the backend's, or nil) and then the
// client's r into object name, and returns how many bytes it kept: all
// it read, also when r failed (the registry hashed them), in which case
// clientErr is r's error. err says the object was not written (a backend
// failure); nothing is kept then.
func (d *Driver) writePart(ctx context.Context, name string, before, r io.Reader) (n int64, clientErr, err error) {
	// The write must outlive a client that hangs up mid-body, so that
	// what it sent is kept; a failure of the backend cancels it.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	w := d.bucket.Object(name).NewWriter(wctx)
	w.ChunkSize = writeChunkSize
	w.ContentType = "application/octet-stream"
	w.KMSKeyName = d.kmsKey
	rec := &objstore.ClientReader{R: r}
	var src io.Reader = rec
	if before != nil {
		src = io.MultiReader(before, rec)
	}
	n, copyErr := io.Copy(w, src)
	switch {
	case copyErr != nil && rec.Err == nil:
		cancel()
		_ = w.Close()
		return 0, nil, classify(copyErr, "write "+name)
	case n == 0:
		cancel() // nothing to keep: no empty object
		_ = w.Close()
		return 0, rec.Err, nil
	}
	if rec.Err != nil {
		// The client is gone, and the request's context with it: the
		// rest of the write gets a bound of its own.
		t := time.AfterFunc(writeTimeout, cancel)
		defer t.Stop()
	}
	if err := w.Close(); err != nil {
		return 0, nil, classify(err, "write "+name)
	}
	return n, rec.Err, nil
}

// merge composes the session's objects into head-<Next-1> and removes
// them. A merge from the same state done before (a crash before its
// record) left that head already, made of the same immutable parts: it is
// taken as it is, since its sources may be gone.
func (d *Driver) merge(ctx context.Context, prefix string, st uploadState) (uploadState, error) {
	head := headName(prefix, st.Next-1)
	merged := uploadState{Next: st.Next, Head: st.Next - 1, Size: st.Size}
	if ok, err := d.hasSize(ctx, head, st.Size); err != nil || ok {
		return merged, err
	}
	if err := d.compose(ctx, head, st.sources(prefix), st.Size); err != nil {
		return st, err
	}
	d.deleteAll(ctx, st.sources(prefix))
	return merged, nil
}

// resolve is the objects that hold the bytes of a session in state st:
// its sources, or the head a merge from st made before a crash.
func (d *Driver) resolve(ctx context.Context, prefix string, st uploadState) ([]string, error) {
	sources := st.sources(prefix)
	if len(sources) < maxSources {
		return sources, nil
	}
	head := headName(prefix, st.Next-1)
	ok, err := d.hasSize(ctx, head, st.Size)
	if err != nil {
		return nil, err
	}
	if ok {
		return []string{head}, nil
	}
	return sources, nil
}

// hasSize tells whether object name exists with size bytes.
func (d *Driver) hasSize(ctx context.Context, name string, size int64) (bool, error) {
	attrs, err := d.bucket.Object(name).Attrs(ctx)
	if errors.Is(err, gstorage.ErrObjectNotExist) {
		return false, nil
	}
	if err != nil {
		return false, classify(err, "get "+name)
	}
	return attrs.Size == size, nil
}

// compose joins sources (at most maxSources) into dst, which must then
// hold size bytes; a dst of another size is removed. It is a call of the
// JSON API's own client, since the library's Composer cannot name the
// KMS key of the object it makes (the compose's kmsKeyName); retried on
// the answers the library retries, with gax's backoff and jitter.
func (d *Driver) compose(ctx context.Context, dst string, sources []string, size int64) error {
	req := &raw.ComposeRequest{Destination: &raw.Object{ContentType: "application/octet-stream"}}
	for _, s := range sources {
		req.SourceObjects = append(req.SourceObjects, &raw.ComposeRequestSourceObjects{Name: s})
	}
	var obj *raw.Object
	err := gax.Invoke(ctx, func(ctx context.Context, _ gax.CallSettings) error {
		call := d.raw.Objects.Compose(d.name, dst, req).Context(ctx)
		if d.kmsKey != "" {
			call.KmsKeyName(d.kmsKey)
		}
		var err error
		obj, err = call.Do()
		return err
	}, gax.WithRetry(newRetryer))
	if err != nil {
		if missing := d.firstMissing(ctx, sources); missing != "" {
			// GCS answers 404 for a missing source (its emulator, 500).
			return fmt.Errorf("gcs compose %s: %w: %s is gone (the upload was aborted?)", dst, errdefs.ErrSizeMismatch, missing)
		}
		return classify(err, "compose "+dst)
	}
	if int64(obj.Size) != size {
		_ = d.bucket.Object(dst).Delete(context.WithoutCancel(ctx))
		return fmt.Errorf("gcs compose %s: it holds %d bytes, not the %d its sources were recorded with", dst, obj.Size, size)
	}
	return nil
}

// retries is how many times a compose is tried again.
const retries = 4

// newRetryer retries a compose on 408, 429 and 5xx, retries times at most.
func newRetryer() gax.Retryer {
	return &boundedRetryer{left: retries, inner: gax.OnHTTPCodes(gax.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2},
		http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout)}
}

type boundedRetryer struct {
	left  int
	inner gax.Retryer
}

func (r *boundedRetryer) Retry(err error) (time.Duration, bool) {
	if r.left == 0 {
		return 0, false
	}
	r.left--
	return r.inner.Retry(err)
}

// firstMissing is the first of names that does not exist, "" if all do
// (or when it cannot tell).
func (d *Driver) firstMissing(ctx context.Context, names []string) string {
	for _, name := range names {
		if _, err := d.bucket.Object(name).Attrs(ctx); errors.Is(err, gstorage.ErrObjectNotExist) {
			return name
		}
	}
	return ""
}

// deleteAll removes objects, leaving what it cannot to Abort and Recover
// (they share the session's prefix).
func (d *Driver) deleteAll(ctx context.Context, names []string) {
	ctx = context.WithoutCancel(ctx)
	for _, name := range names {
		_ = d.bucket.Object(name).Delete(ctx)
	}
}

// ReadUpload implements storage.Ingester: the session's objects, one
// after the other.
func (d *Driver) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return nil, err
	}
	st, err := decodeState(u.State)
	if err != nil {
		return nil, err
	}
	sources, err := d.resolve(ctx, prefix, st)
	if err != nil {
		return nil, err
	}
	return &sequence{ctx: ctx, d: d, names: sources}, nil
}

// sequence reads objects one after the other, opening each when the one
// before it ends.
type sequence struct {
	ctx   context.Context
	d     *Driver
	names []string
	cur   io.ReadCloser
}

func (s *sequence) Read(p []byte) (int, error) {
	for {
		if s.cur == nil {
			if len(s.names) == 0 {
				return 0, io.EOF
			}
			r, err := s.d.bucket.Object(s.names[0]).NewReader(s.ctx)
			if err != nil {
				return 0, classify(err, "read "+s.names[0])
			}
			s.cur, s.names = r, s.names[1:]
		}
		n, err := s.cur.Read(p)
		if err == io.EOF {
			s.cur.Close()
			s.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (s *sequence) Close() error {
	if s.cur != nil {
		return s.cur.Close()
	}
	return nil
}

// Commit implements storage.Ingester: one compose of the session's
// objects into the blob's name (at most maxSources, by the merges of
// Append), then their deletion.
func (d *Driver) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return err
	}
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	st, err := decodeState(u.State)
	if err != nil {
		return err
	}
	if st.Size != size {
		return fmt.Errorf("commit upload %s as %s: %w: it holds %d bytes, not %d", u.ID, dgst, errdefs.ErrSizeMismatch, st.Size, size)
	}
	sources, err := d.resolve(ctx, prefix, st)
	if err != nil {
		return err
	}
	// The blob's name is its content: an object there of its size is the
	// blob (a commit repeated after a crash, or a parallel push).
	exists, err := d.hasSize(ctx, key, size)
	switch {
	case err != nil:
		return err
	case exists:
	case len(sources) == 0:
		w := d.bucket.Object(key).NewWriter(ctx)
		w.ContentType = "application/octet-stream"
		w.KMSKeyName = d.kmsKey
		if err := w.Close(); err != nil {
			return classify(err, "write empty blob "+dgst.String())
		}
	default:
		if err := d.compose(ctx, key, sources, size); err != nil {
			return fmt.Errorf("commit upload %s as %s: %w", u.ID, dgst, err)
		}
	}
	d.deleteAll(ctx, sources)
	return nil
}

// Abort implements storage.Ingester: every object of the session, found
// by its prefix (so that what appends never recorded left goes too).
func (d *Driver) Abort(ctx context.Context, u storage.Upload) error {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	return d.removeUploads(ctx, prefix, func(string) bool { return false }, 0)
}

// Recover implements storage.Recoverer: objects of upload sessions that
// no longer exist (a crash, an abort that failed, an append never
// recorded) go. It lists the upload objects once, at start, and leaves
// alone any name not of Berth's shape and anything younger than
// recoverGrace (what another registry on the same bucket may be writing).
func (d *Driver) Recover(ctx context.Context, live func(id string) bool) error {
	return d.removeUploads(ctx, objstore.UploadsPrefix, live, d.recoverGrace)
}

// uploadObject matches the names of upload sessions' objects, and names
// the session.
var uploadObject = regexp.MustCompile(`^upload-([a-z0-9]{1,128})\.(part|head)-[0-9]{1,10}$`)

// removeUploads deletes the objects under prefix of sessions live does not
// know, last written more than grace ago.
func (d *Driver) removeUploads(ctx context.Context, prefix string, live func(string) bool, grace time.Duration) error {
	cutoff := time.Now().Add(-grace)
	return d.deleteListed(ctx, prefix, func(attrs *gstorage.ObjectAttrs) bool {
		m := uploadObject.FindStringSubmatch(attrs.Name)
		return m != nil && !live(m[1]) && !attrs.Updated.After(cutoff)
	})
}

// deleteListed lists the objects under prefix and deletes those doomed
// says must go.
func (d *Driver) deleteListed(ctx context.Context, prefix string, doomed func(*gstorage.ObjectAttrs) bool) error {
	q := &gstorage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name", "Updated"}); err != nil {
		return err
	}
	it := d.bucket.Objects(ctx, q)
	var errs []error
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			return classify(err, "list "+prefix)
		}
		if !doomed(attrs) {
			continue
		}
		if err := d.bucket.Object(attrs.Name).Delete(ctx); err != nil && !errors.Is(err, gstorage.ErrObjectNotExist) {
			errs = append(errs, classify(err, "delete "+attrs.Name))
		}
	}
	return errors.Join(errs...)
}
