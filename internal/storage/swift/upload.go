package swift

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

	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// layout cuts a session into segments of up to 8 MiB (objstore.Pieces):
// the large object a commit makes of them holds no small segments, which
// Swift serves slowly.
var layout = objstore.PieceLayout{Size: segmentSize, Max: maxSegments, Driver: "swift", Piece: "segment"}

func segmentName(prefix string, n int32) string { return prefix + "seg-" + strconv.Itoa(int(n)) }

// segments are the names of segments 1..next-1.
func segments(prefix string, next int32) []string {
	names := make([]string, 0, next-1)
	for n := int32(1); n < next; n++ {
		names = append(names, segmentName(prefix, n))
	}
	return names
}

// Append implements storage.Ingester: the bytes become segments of up to
// 8 MiB, each buffered as it arrives (so that Swift checks its MD5, and a
// client that hangs up mid-segment has what it sent kept). From the
// segment that holds offset on, segments are written again: that one with
// its bytes before offset (a short last segment topped up, or a caller
// that recorded fewer bytes than the state holds).
func (d *Driver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return 0, u.State, err
	}
	st, err := layout.Decode(u.State)
	if err != nil {
		return 0, u.State, err
	}
	next, start, err := layout.Start(u.ID, st, offset)
	if err != nil {
		return 0, u.State, err
	}
	before, err := d.readBack(ctx, segmentName(prefix, next), offset-start)
	if err != nil {
		return 0, u.State, err
	}
	res, err := layout.Append(u.ID, st, offset, before, r, func(n int32, buf objstore.Buffer, size int64) error {
		// Written also when the client is gone: what it sent is kept.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
		defer cancel()
		_, err := objects.Create(wctx, d.client, d.containerName, segmentName(prefix, n), objects.CreateOpts{
			Content: buf, ContentLength: size, ContentType: "application/octet-stream",
		}).Extract()
		if err != nil {
			return classify(err, fmt.Sprintf("write segment %d of %s", n, prefix))
		}
		return nil
	})
	if err != nil {
		return 0, u.State, err
	}
	if !res.Changed {
		return 0, u.State, res.ClientErr // nothing sent, nothing changed
	}
	return res.N, res.State.Encode(), res.ClientErr
}

// readBack reads the first n bytes of segment name.
func (d *Driver) readBack(ctx context.Context, name string, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	res := objects.Download(ctx, d.client, d.containerName, name, objects.DownloadOpts{Range: fmt.Sprintf("bytes=0-%d", n-1)})
	if res.Err != nil {
		err := classify(res.Err, "read back "+name)
		if errors.Is(err, errdefs.ErrNotFound) {
			// The recorded bytes are gone (aborted): the session is lost.
			return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, n))
	if err != nil {
		return nil, classify(err, "read back "+name)
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("swift read back %s: %d of %d bytes: %w", name, len(b), n, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// ReadUpload implements storage.Ingester: the segments, one after the
// other.
func (d *Driver) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return nil, err
	}
	st, err := layout.Decode(u.State)
	if err != nil {
		return nil, err
	}
	// The last segment may hold more than recorded (an append never
	// recorded topped it up): the recorded bytes are its first ones.
	seq := objstore.Sequence(ctx, segments(prefix, st.Next), func(ctx context.Context, name string) (io.ReadCloser, error) {
		res := objects.Download(ctx, d.client, d.containerName, name, nil)
		if res.Err != nil {
			return nil, classify(res.Err, "read "+name)
		}
		return res.Body, nil
	})
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(seq, st.Size), seq}, nil
}

// Commit implements storage.Ingester. One segment is copied into the
// blob's name; several are joined by a static large object manifest,
// which is copied, flattened, into it (a server-side copy: the blob is one
// plain object). A blob above Swift's largest object stays a manifest,
// over copies of the segments under segments/<alg>/<hex>/. Then the
// session's objects go.
func (d *Driver) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	key, prefix, st, err := layout.Committing(u, dgst, size)
	if err != nil {
		return err
	}
	// Bounded: a backend that stops answering must not hold the session
	// (and the storage's write gate) forever; a large copy gets longer.
	ctx, cancel := context.WithTimeout(ctx, requestTimeout+time.Duration(size/(20<<20))*time.Second)
	defer cancel()
	// The blob's name is its content: an object there of its size is it.
	segs := segments(prefix, st.Next)
	got, err := d.size(ctx, key)
	switch {
	case err == nil && got == size:
		d.deleteAll(ctx, segs)
		return nil
	case err != nil && !errors.Is(err, errdefs.ErrNotFound):
		return err
	}
	if err := d.trimLast(ctx, prefix, st); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("commit upload %s: %w: its last segment is gone (aborted?)", u.ID, errdefs.ErrSizeMismatch)
		}
		return fmt.Errorf("commit upload %s as %s: %w", u.ID, dgst, err)
	}
	// A blob another commit publishes meanwhile has the same bytes (its
	// digest was checked as they streamed in, as these were), so a copy
	// over it changes nothing, and nothing here deletes the blob's name.
	// (Swift's copy takes If-None-Match for the source's: it cannot be
	// made conditional on the destination.)
	switch {
	case size == 0:
		err = d.publish(ctx, key, "")
	case len(segs) == 1:
		err = d.publish(ctx, key, segs[0])
	case size <= d.flatLimit:
		var manifests []string
		if manifests, err = d.putManifest(ctx, prefix+"manifest", segs); err == nil {
			err = d.publish(ctx, key, prefix+"manifest")
		}
		d.deleteAll(ctx, manifests)
	default:
		err = d.commitLarge(ctx, key, u.ID, dgst, segs)
	}
	if err != nil {
		if missing := d.firstMissing(ctx, segs); missing != "" {
			return fmt.Errorf("commit upload %s: %w: %s is gone (aborted?)", u.ID, errdefs.ErrSizeMismatch, missing)
		}
		return fmt.Errorf("commit upload %s as %s: %w", u.ID, dgst, err)
	}
	if got, err := d.size(ctx, key); err != nil || got != size {
		return fmt.Errorf("commit upload %s as %s: the blob does not read back with %d bytes (%d, %v)", u.ID, dgst, size, got, err)
	}
	d.deleteAll(ctx, segs)
	return nil
}

// publish writes key as a server-side copy of from (its content, when
// from is a manifest), or empty when from is "".
func (d *Driver) publish(ctx context.Context, key, from string) error {
	opts := objects.CreateOpts{Content: bytes.NewReader(nil), ContentType: "application/octet-stream", NoETag: true}
	if from != "" {
		opts.CopyFrom = "/" + d.containerName + "/" + from
	}
	_, err := objects.Create(ctx, d.client, d.containerName, key, opts).Extract()
	return classify(err, "write "+key)
}

// trimLast rewrites the last segment with its recorded bytes when it
// holds more (an append never recorded topped it up).
func (d *Driver) trimLast(ctx context.Context, prefix string, st objstore.Pieces) error {
	if st.Next == 1 {
		return nil
	}
	last := segmentName(prefix, st.Next-1)
	want := st.Size - int64(st.Next-2)*segmentSize
	got, err := d.size(ctx, last)
	if err != nil || got == want {
		return err
	}
	b, err := d.readBack(ctx, last, want)
	if err != nil {
		return err
	}
	_, err = objects.Create(ctx, d.client, d.containerName, last, objects.CreateOpts{
		Content: bytes.NewReader(b), ContentLength: want, ContentType: "application/octet-stream",
	}).Extract()
	return classify(err, "write "+last)
}

// commitLarge makes the blob a manifest over copies of the segments in a
// directory of this commit's own (segments/<alg>/<hex>/<upload>/): a
// commit of the same blob at the same moment, chunked otherwise, never
// mixes its segments with these.
func (d *Driver) commitLarge(ctx context.Context, key, id string, dgst digest.Digest, segs []string) error {
	dir := "segments/" + string(dgst.Algorithm()) + "/" + dgst.Encoded() + "/" + id + "/"
	own := make([]string, len(segs))
	for i, s := range segs {
		own[i] = dir + strconv.Itoa(i+1)
		if err := d.publish(ctx, own[i], s); err != nil {
			d.deleteAll(ctx, own[:i])
			return err
		}
	}
	if _, err := d.putManifest(ctx, key, own); err != nil {
		d.deleteAll(ctx, own)
		return err
	}
	return nil
}

// putManifest writes a static large object manifest at name over segs
// (manifests of manifests above maxManifestSegments), and returns the
// names of every manifest it wrote.
func (d *Driver) putManifest(ctx context.Context, name string, segs []string) ([]string, error) {
	var written []string
	if per := d.manifestSegments; len(segs) > per {
		var subs []string
		for i := 0; i < len(segs); i += per {
			sub := name + "-" + strconv.Itoa(i/per+1)
			w, err := d.putManifest(ctx, sub, segs[i:min(i+per, len(segs))])
			written = append(written, w...)
			if err != nil {
				return written, err
			}
			subs = append(subs, sub)
		}
		segs = subs
	}
	type entry struct {
		Path string `json:"path"`
	}
	entries := make([]entry, len(segs))
	for i, s := range segs {
		entries[i] = entry{Path: "/" + d.containerName + "/" + s}
	}
	body, err := json.Marshal(entries)
	if err != nil {
		return written, err
	}
	// No ETag: on a manifest it would be checked against the segments'.
	_, err = objects.Create(ctx, d.client, d.containerName, name, objects.CreateOpts{
		Content: bytes.NewReader(body), MultipartManifest: "put", ContentType: "application/octet-stream", NoETag: true,
	}).Extract()
	if err != nil {
		return written, classify(err, "write manifest "+name)
	}
	return append(written, name), nil
}

// size is the length of object name.
func (d *Driver) size(ctx context.Context, name string) (int64, error) {
	hdr, err := objects.Get(ctx, d.client, d.containerName, name, nil).Extract()
	if err != nil {
		return 0, classify(err, "get "+name)
	}
	return hdr.ContentLength, nil
}

// firstMissing is the first of names that does not exist, "" if all do
// (or when it cannot tell): asked after a commit failed, to tell an
// aborted session from a failing backend.
func (d *Driver) firstMissing(ctx context.Context, names []string) string {
	for _, name := range names {
		if _, err := d.size(ctx, name); errors.Is(err, errdefs.ErrNotFound) {
			return name
		}
	}
	return ""
}

// deleteAll removes objects, leaving what it cannot to Abort and Recover.
func (d *Driver) deleteAll(ctx context.Context, names []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	for _, name := range names {
		_ = deleteObject(ctx, d, name, objects.DeleteOpts{})
	}
}

// Abort implements storage.Ingester: the session's segments by name
// (Swift's listings may lag its writes), those of an append never
// recorded found by asking for the next until one is missing; a session
// whose state is lost is found by its prefix.
func (d *Driver) Abort(ctx context.Context, u storage.Upload) error {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	st, err := layout.Decode(u.State)
	if err != nil || len(u.State) == 0 {
		return d.removeUploads(ctx, prefix, func(string) bool { return false }, 0)
	}
	d.deleteAll(ctx, segments(prefix, st.Next))
	for n := st.Next; n <= maxSegments; n++ {
		err := deleteObject(ctx, d, segmentName(prefix, n), objects.DeleteOpts{})
		if err != nil {
			if err := classify(err, ""); !errors.Is(err, errdefs.ErrNotFound) {
				return classify(err, "delete "+segmentName(prefix, n))
			}
			break
		}
	}
	return nil
}

// Recover implements storage.Recoverer: objects of upload sessions that
// no longer exist go. It lists the upload objects once, at start, and
// leaves alone any name not of Berth's shape and anything younger than
// recoverGrace.
func (d *Driver) Recover(ctx context.Context, live func(id string) bool) error {
	return d.removeUploads(ctx, objstore.UploadsPrefix, live, d.recoverGrace)
}

// uploadObject matches the names of upload sessions' objects, and names
// the session.
var uploadObject = regexp.MustCompile(`^upload-([a-z0-9]{1,128})\.(seg-[0-9]{1,7}|manifest(-[0-9]{1,4})?)$`)

func (d *Driver) removeUploads(ctx context.Context, prefix string, live func(string) bool, grace time.Duration) error {
	cutoff := time.Now().Add(-grace)
	return d.deleteListed(ctx, prefix, func(o objects.Object) bool {
		m := uploadObject.FindStringSubmatch(o.Name)
		return m != nil && !live(m[1]) && (grace == 0 || !o.LastModified.After(cutoff))
	})
}

// deleteListed lists the objects under prefix, a page at a time, and
// deletes those doomed says must go.
func (d *Driver) deleteListed(ctx context.Context, prefix string, doomed func(objects.Object) bool) error {
	var errs []error
	err := objects.List(d.client, d.containerName, objects.ListOpts{Prefix: prefix}).EachPage(ctx, func(ctx context.Context, page pagination.Page) (bool, error) {
		list, err := objects.ExtractInfo(page)
		if err != nil {
			return false, err
		}
		for _, o := range list {
			if !doomed(o) {
				continue
			}
			if err := deleteObject(ctx, d, o.Name, objects.DeleteOpts{}); err != nil && !errors.Is(classify(err, ""), errdefs.ErrNotFound) {
				errs = append(errs, classify(err, "delete "+o.Name))
			}
		}
		return true, nil
	})
	if err != nil {
		return classify(err, "list "+prefix)
	}
	return errors.Join(errs...)
}
