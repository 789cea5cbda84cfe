package gcs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"syscall"
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

// decodeState reads a recorded state. It comes back from the metadata
// store, so it is checked as input: no state names more objects than one
// compose joins (every append keeps it so).
func decodeState(b []byte) (uploadState, error) {
	st := uploadState{Next: 1}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Next < 1 || st.Next > maxPart || st.Head < 0 || st.Head >= st.Next || st.Size < 0 ||
		st.objects() > maxSources {
		return st, fmt.Errorf("gcs upload state %q: %w", b, errdefs.ErrInvalidArgument)
	}
	return st, nil
}

// objects is how many objects hold the session's bytes.
func (st uploadState) objects() int {
	n := int(st.Next - 1 - st.Head)
	if st.Head > 0 {
		n++
	}
	return n
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
	if st.objects() >= maxSources {
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
	if kept == 0 {
		// The cut is at the start of the last part: it is left out, and
		// the new bytes become it.
		st = uploadState{Next: st.Next - 1, Head: st.Head, Size: offset}
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
	var head io.Reader = bytes.NewReader(nil)
	{
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

// writeTimeout bounds the write of what a client sent once the request
// is over (the client went away), and chunkTimeout each request of a
// write (a backend that stalls).
const (
	writeTimeout = 2 * time.Minute
	chunkTimeout = time.Minute
)

// writePart streams before (bytes of the backend's, or nil) and then the
// client's r into object name, and returns how many bytes it kept: all
// it read, also when r failed (the registry hashed them), in which case
// clientErr is r's error. err says the object was not written (a backend
// failure); nothing is kept then.
//
// The first writeChunkSize bytes are read into a buffer that grows as
// they arrive: an append no longer than that is one request of its own
// size, and the library's writer (which takes a whole chunk of memory at
// once) is made only for a client that has sent a chunk's worth.
func (d *Driver) writePart(ctx context.Context, name string, before, r io.Reader) (n int64, clientErr, err error) {
	rec := &objstore.ClientReader{R: r}
	var src io.Reader = rec
	if before != nil {
		src = io.MultiReader(before, rec)
	}
	first, got, ferr := objstore.Fill(src, writeChunkSize, "")
	if ferr != nil && rec.Err == nil && !errors.Is(ferr, io.EOF) && !errors.Is(ferr, io.ErrUnexpectedEOF) {
		first.Close()
		return 0, nil, classify(ferr, "read the bytes before "+name)
	}
	defer first.Close()
	ended := ferr != nil
	if got == 0 {
		return 0, rec.Err, nil // nothing to keep: no empty object
	}
	// The write must outlive a client that hangs up mid-body, so that
	// what it sent is kept; it is bounded once the request is over, and a
	// failure of the backend cancels it.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(writeTimeout, cancel) })
	defer stop()
	w := d.bucket.Object(name).NewWriter(wctx)
	w.ChunkSize = writeChunkSize
	if ended {
		// One request, of about the bytes there are (the writer rounds up
		// to 256 KiB).
		w.ChunkSize = int(got)
	}
	w.ChunkTransferTimeout = chunkTimeout
	w.ContentType = "application/octet-stream"
	w.KMSKeyName = d.kmsKey
	if ended {
		_, err = io.Copy(w, first)
	} else {
		n, err = io.Copy(w, io.MultiReader(first, src))
	}
	if err != nil && rec.Err == nil {
		cancel()
		_ = w.Close()
		return 0, nil, classify(err, "write "+name)
	}
	if err := w.Close(); err != nil {
		return 0, nil, classify(err, "write "+name)
	}
	if ended {
		n = got
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
	if found, err := d.stat(ctx, head); err != nil || (found.exists && found.size == st.Size) {
		return merged, err
	}
	if err := d.compose(ctx, head, st.sources(prefix), st.Size, nil); err != nil {
		if errors.Is(err, errSourceGone) {
			// The session lost bytes (aborted meanwhile): it must restart.
			return st, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
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
	found, err := d.stat(ctx, head)
	if err != nil {
		return nil, err
	}
	if found.exists && found.size == st.Size {
		return []string{head}, nil
	}
	return sources, nil
}

// object is what stat found of an object.
type object struct {
	exists     bool
	size       int64
	generation int64
}

// stat reads an object's size and generation.
func (d *Driver) stat(ctx context.Context, name string) (object, error) {
	attrs, err := d.bucket.Object(name).Attrs(ctx)
	if errors.Is(err, gstorage.ErrObjectNotExist) {
		return object{}, nil
	}
	if err != nil {
		return object{}, classify(err, "get "+name)
	}
	return object{exists: true, size: attrs.Size, generation: attrs.Generation}, nil
}

// errSourceGone says that an object a compose names is missing.
var errSourceGone = errors.New("a source of the compose is gone")

// compose joins sources (at most maxSources) into dst, which must then
// hold size bytes, and hard-deletes them (no soft-deleted or noncurrent
// copies of temporary bytes to pay for). With ifGeneration set, only
// over that generation of dst (0: only if dst does not exist): a commit
// never replaces a blob another one published meanwhile. A dst of another
// size is removed, by its own generation. It is a call of the JSON API's
// own client, since the library's Composer cannot name the KMS key of the
// object it makes (the compose's kmsKeyName).
func (d *Driver) compose(ctx context.Context, dst string, sources []string, size int64, ifGeneration *int64) error {
	req := &raw.ComposeRequest{Destination: &raw.Object{ContentType: "application/octet-stream"}, DeleteSourceObjects: true}
	for _, s := range sources {
		req.SourceObjects = append(req.SourceObjects, &raw.ComposeRequestSourceObjects{Name: s})
	}
	var obj *raw.Object
	err := gax.Invoke(ctx, func(ctx context.Context, _ gax.CallSettings) error {
		call := d.raw.Objects.Compose(d.name, dst, req).Context(ctx)
		if d.kmsKey != "" {
			call.KmsKeyName(d.kmsKey)
		}
		if ifGeneration != nil {
			call.IfGenerationMatch(*ifGeneration)
		}
		var err error
		obj, err = call.Do()
		return err
	}, gax.WithRetry(newRetryer))
	if err != nil {
		// GCS answers 404 for a missing source; its emulator, 500.
		if status := apiStatus(err); status == http.StatusNotFound || status == http.StatusInternalServerError {
			if missing := d.firstMissing(ctx, sources); missing != "" {
				return fmt.Errorf("gcs compose %s: %w: %s", dst, errSourceGone, missing)
			}
		}
		return classify(err, "compose "+dst)
	}
	if int64(obj.Size) != size {
		_ = d.bucket.Object(dst).If(gstorage.Conditions{GenerationMatch: obj.Generation}).Delete(context.WithoutCancel(ctx))
		return fmt.Errorf("gcs compose %s: it holds %d bytes, not the %d its sources were recorded with", dst, obj.Size, size)
	}
	return nil
}

// retries is how many times a compose is tried again.
const retries = 4

// newRetryer retries a compose on 408, 429, 5xx and a connection that
// failed, retries times at most, with gax's backoff and jitter.
func newRetryer() gax.Retryer {
	backoff := gax.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}
	return &boundedRetryer{left: retries, backoff: backoff, onCodes: gax.OnHTTPCodes(backoff,
		http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout)}
}

type boundedRetryer struct {
	left    int
	backoff gax.Backoff
	onCodes gax.Retryer
}

func (r *boundedRetryer) Retry(err error) (time.Duration, bool) {
	if r.left == 0 {
		return 0, false
	}
	r.left--
	var netErr net.Error
	if apiStatus(err) == 0 && (errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
		return r.backoff.Pause(), true
	}
	return r.onCodes.Retry(err)
}

// firstMissing is the first of names that does not exist, "" if all do
// (or when it cannot tell).
func (d *Driver) firstMissing(ctx context.Context, names []string) string {
	for _, name := range names {
		// Asked once each: this runs after a failure, and must not be
		// the slow part of it.
		once := d.bucket.Object(name).Retryer(gstorage.WithPolicy(gstorage.RetryNever))
		if _, err := once.Attrs(ctx); errors.Is(err, gstorage.ErrObjectNotExist) {
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
	return objstore.Sequence(ctx, sources, func(ctx context.Context, name string) (io.ReadCloser, error) {
		r, err := d.bucket.Object(name).NewReader(ctx)
		if err != nil {
			return nil, classify(err, "read "+name)
		}
		return r, nil
	}), nil
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
	found, err := d.stat(ctx, key)
	switch {
	case err != nil:
		return err
	case found.exists && found.size == size:
	case len(sources) == 0:
		w := d.bucket.Object(key).If(gstorage.Conditions{DoesNotExist: !found.exists, GenerationMatch: found.generation}).NewWriter(ctx)
		w.ContentType = "application/octet-stream"
		w.KMSKeyName = d.kmsKey
		if err := w.Close(); err != nil && !d.published(ctx, key, size, err) {
			return classify(err, "write empty blob "+dgst.String())
		}
	default:
		// Only over what was there (nothing, or an object of another
		// size): a blob another commit published meanwhile stays.
		if err := d.compose(ctx, key, sources, size, &found.generation); err != nil && !d.published(ctx, key, size, err) {
			if errors.Is(err, errSourceGone) {
				return fmt.Errorf("commit upload %s as %s: %w: %v (the upload was aborted?)", u.ID, dgst, errdefs.ErrSizeMismatch, err)
			}
			return fmt.Errorf("commit upload %s as %s: %w", u.ID, dgst, err)
		}
	}
	d.deleteAll(ctx, sources)
	return nil
}

// published tells whether a write of key that failed with err lost to
// another that published key with size bytes (its precondition failed).
func (d *Driver) published(ctx context.Context, key string, size int64, err error) bool {
	if apiStatus(err) != http.StatusPreconditionFailed {
		return false
	}
	found, serr := d.stat(ctx, key)
	return serr == nil && found.exists && found.size == size
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
		// With no grace, no clock is compared (the server's may be ahead).
		return m != nil && !live(m[1]) && (grace == 0 || !attrs.Updated.After(cutoff))
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
