package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// uploadState is what the driver keeps about an upload between requests:
// small and fixed in size, since every PATCH rewrites it.
type uploadState struct {
	// UploadID is the multipart upload's ID, "" until a first part is
	// written (a blob shorter than a part never starts one).
	UploadID string `json:"u,omitempty"`
	// PartSize is the size of the first parts; it doubles every
	// partsPerSize parts. It is the chunk size when the upload began, so
	// a chunk size changed meanwhile does not change this upload's parts.
	PartSize int64 `json:"p"`
	// Next is the number of the next part to write (from 1). A part with
	// a higher number is left over from an append that was never
	// recorded: it is overwritten, or left out of the commit.
	Next int32 `json:"n"`
	// Tail is how many bytes of the next part wait in the tail object
	// (upload-<id>.tail-<Next>): parts but the last must be at least
	// 5 MiB, and clients send chunks of any size.
	Tail int64 `json:"t,omitempty"`
	// TailETag is the ETag of the tail object as written with Tail
	// bytes: an append that was never recorded may have rewritten the
	// object longer since (its first Tail bytes stay the same), so a copy
	// of the whole object is made only if it still has this ETag.
	TailETag string `json:"e,omitempty"`
	// Stale names the tail object this state no longer needs (its bytes
	// went into a part): the next append, or the commit, deletes it.
	Stale int32 `json:"s,omitempty"`
}

func decodeState(b []byte, partSize int64) (uploadState, error) {
	st := uploadState{PartSize: partSize, Next: 1}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil || st.PartSize < 5*mib || st.PartSize > maxPartSize ||
		st.Next < 1 || st.Next > maxParts+1 || st.Tail < 0 || st.Tail > maxPartSize || st.Stale < 0 || st.Stale > maxParts {
		return st, fmt.Errorf("s3 upload state %q: %w", b, errdefs.ErrInvalidArgument)
	}
	return st, nil
}

func (st uploadState) encode() []byte {
	b, _ := json.Marshal(st) // a struct of strings and numbers
	return b
}

// partSizeOf is the size of part n.
func (st uploadState) partSizeOf(n int32) int64 {
	shift := (n - 1) / partsPerSize
	if shift > 30 {
		return maxPartSize
	}
	return min(st.PartSize<<shift, maxPartSize)
}

// partsSize is how many bytes the parts before Next hold.
func (st uploadState) partsSize() int64 {
	var total int64
	for n := int32(1); n < st.Next; n += partsPerSize {
		count := min(st.Next-n, partsPerSize)
		total += int64(count) * st.partSizeOf(n)
	}
	return total
}

// size is how many bytes the upload holds.
func (st uploadState) size() int64 { return st.partsSize() + st.Tail }

func tailKey(prefix string, n int32) string {
	return prefix + "tail-" + strconv.Itoa(int(n))
}

func dataKey(prefix string) string { return prefix + "data" }

// Append implements storage.Ingester. Bytes go in parts of the upload's
// part size; what is short of a part at the end stays in the tail object,
// which the next append sends ahead of its own bytes.
func (d *Driver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return 0, u.State, err
	}
	st, err := decodeState(u.State, d.partSize)
	if err != nil {
		return 0, u.State, err
	}
	if recorded := st.size(); offset > recorded {
		return 0, u.State, fmt.Errorf("append to upload %s at %d: %w: it holds %d bytes", u.ID, offset, errdefs.ErrInvalidArgument, recorded)
	}
	partsEnd := st.partsSize()
	if offset < partsEnd {
		// Parts written cannot be read back (an incomplete multipart
		// upload has no content yet): the caller's record and ours differ
		// by more than a crash leaves.
		return 0, u.State, fmt.Errorf("append to upload %s at %d: %w: its first %d bytes are in parts already", u.ID, offset, errdefs.ErrInvalidArgument, partsEnd)
	}
	if st.Stale != 0 {
		// The recorded state no longer needs it; idempotent if the append
		// that recorded it is replayed.
		d.deleteKey(ctx, tailKey(prefix, st.Stale))
		st.Stale = 0
	}
	st.Tail = offset - partsEnd
	// The client's own error, whatever it is, is told apart from the end
	// of its bytes (net/http reports a client that hung up before its
	// Content-Length as io.ErrUnexpectedEOF, which fill also returns at
	// a clean end).
	client := &objstore.ClientReader{R: r}
	var src io.Reader = client
	if st.Tail > 0 {
		rc, err := d.getRange(ctx, tailKey(prefix, st.Next), 0, st.Tail)
		if errors.Is(err, errdefs.ErrNotFound) {
			return 0, u.State, fmt.Errorf("append to upload %s: %w: its tail is gone (aborted?)", u.ID, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return 0, u.State, err
		}
		defer rc.Close()
		src = io.MultiReader(&exactly{r: rc, n: st.Tail}, client)
	}
	progress := func() int64 { return st.size() - offset }
	for {
		if st.Next > maxParts {
			return progress(), st.encode(), fmt.Errorf("append to upload %s: %w: the blob is larger than %d parts hold", u.ID, errdefs.ErrInvalidArgument, maxParts)
		}
		size := st.partSizeOf(st.Next)
		p, n, rerr := d.fill(src, size)
		ended := client.Err == nil && (rerr == nil || errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF))
		if client.Err != nil {
			rerr = client.Err
		}
		switch {
		case n == size:
			err := d.uploadPart(ctx, prefix, &st, p)
			p.Close()
			if err != nil {
				return progress(), st.encode(), err
			}
			if rerr == nil {
				continue
			}
		case n > st.Tail:
			// What is short of a part is kept as the tail, also when the
			// client stopped mid-part: every byte read from it is then
			// kept, and the caller (who hashed them) may go on from there.
			wctx := ctx
			if !ended {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), tailWriteTimeout)
				defer cancel()
			}
			err := d.putTail(wctx, prefix, &st, p, n)
			p.Close()
			if err != nil {
				return progress(), st.encode(), err
			}
		default:
			p.Close()
		}
		if !ended {
			return progress(), st.encode(), fmt.Errorf("append to upload %s: %w", u.ID, rerr)
		}
		return progress(), st.encode(), nil
	}
}

// tailWriteTimeout bounds the write of what a client sent before it went
// away.
const tailWriteTimeout = 30 * time.Second

// putTail writes p (n bytes) as the tail of st.
func (d *Driver) putTail(ctx context.Context, prefix string, st *uploadState, p part, n int64) error {
	out, err := d.client.PutObject(ctx, d.sseOnPut(&s3.PutObjectInput{
		Bucket: &d.bucket, Key: aws.String(tailKey(prefix, st.Next)), Body: p, ContentLength: aws.Int64(n),
	}))
	if err != nil {
		return classify(err, "write the tail of "+prefix)
	}
	st.Tail, st.TailETag = n, aws.ToString(out.ETag)
	return nil
}

// uploadPart writes p as part st.Next, starting the multipart upload on
// the first, and moves st past it.
func (d *Driver) uploadPart(ctx context.Context, prefix string, st *uploadState, p part) error {
	if st.UploadID == "" {
		out, err := d.client.CreateMultipartUpload(ctx, d.sseOnCreate(&s3.CreateMultipartUploadInput{
			Bucket: &d.bucket, Key: aws.String(dataKey(prefix)), ContentType: aws.String("application/octet-stream"),
		}))
		if err != nil {
			return classify(err, "start multipart upload "+prefix)
		}
		st.UploadID = aws.ToString(out.UploadId)
	}
	_, err := d.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &d.bucket, Key: aws.String(dataKey(prefix)), UploadId: &st.UploadID,
		PartNumber: aws.Int32(st.Next), Body: p, ContentLength: aws.Int64(p.Len()),
	})
	if errorCode(err) == "NoSuchUpload" {
		// Aborted: by the bucket's lifecycle rule a day after it began, or
		// by hand. What it held is gone; the upload starts again.
		return fmt.Errorf("write part %d of %s: %w: the multipart upload is gone (aborted by a lifecycle rule or by hand)", st.Next, prefix, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return classify(err, fmt.Sprintf("write part %d of %s", st.Next, prefix))
	}
	if st.Tail > 0 {
		st.Stale = st.Next
	}
	st.Next++
	st.Tail, st.TailETag = 0, ""
	return nil
}

// Commit implements storage.Ingester.
func (d *Driver) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return err
	}
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	st, err := decodeState(u.State, d.partSize)
	if err != nil {
		return err
	}
	if got := st.size(); got != size {
		return fmt.Errorf("commit upload %s as %s: %w: it holds %d bytes, not %d", u.ID, dgst, errdefs.ErrSizeMismatch, got, size)
	}
	switch head, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key}); {
	case err == nil && aws.ToInt64(head.ContentLength) == size:
		// Content-addressed: the blob is there already.
		d.discard(ctx, prefix, st, false)
		return nil
	case err == nil:
		// An object of another size under this digest is not this blob
		// (written by hand, or damaged): it is replaced.
	case !errors.Is(classify(err, ""), errdefs.ErrNotFound):
		return classify(err, "head blob "+dgst.String())
	}
	switch {
	case st.UploadID == "" && size == 0:
		// S3 refuses a multipart upload of no parts.
		err = d.putBytes(ctx, key, nil)
	case st.UploadID == "":
		err = d.copyTail(ctx, prefix, st, key)
	default:
		if err = d.complete(ctx, prefix, st); err != nil {
			break
		}
		// A copy that fails leaves the completed data and its record: a
		// commit retried at this state copies it then.
		err = d.copyObject(ctx, dataKey(prefix), key, size)
	}
	if err != nil {
		return fmt.Errorf("commit upload %s as %s: %w", u.ID, dgst, err)
	}
	d.discard(ctx, prefix, st, st.UploadID != "")
	return nil
}

// putBytes writes b as key.
func (d *Driver) putBytes(ctx context.Context, key string, b []byte) error {
	_, err := d.client.PutObject(ctx, d.sseOnPut(&s3.PutObjectInput{
		Bucket: &d.bucket, Key: &key, Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	}))
	return classify(err, "write "+key)
}

// copyTail makes the tail of st, which is the whole upload, the object
// key: copied by the server while it is as recorded, else its recorded
// first bytes read back and written.
func (d *Driver) copyTail(ctx context.Context, prefix string, st uploadState, key string) error {
	tail := tailKey(prefix, st.Next)
	var err error
	if st.TailETag != "" {
		_, err = d.client.CopyObject(ctx, d.sseOnCopy(&s3.CopyObjectInput{
			Bucket: &d.bucket, Key: &key, CopySource: aws.String(d.bucket + "/" + tail), CopySourceIfMatch: &st.TailETag,
		}))
	}
	if st.TailETag == "" || httpStatus(err) == http.StatusPreconditionFailed {
		// Rewritten since it was recorded (or its ETag is unknown): its
		// first Tail bytes are the recorded ones.
		p, rerr := d.readPart(ctx, tail, st.Tail)
		if rerr != nil {
			return rerr
		}
		defer p.Close()
		_, err = d.client.PutObject(ctx, d.sseOnPut(&s3.PutObjectInput{Bucket: &d.bucket, Key: &key, Body: p, ContentLength: aws.Int64(p.Len())}))
		return classify(err, "write "+key)
	}
	if errors.Is(classify(err, ""), errdefs.ErrNotFound) {
		return fmt.Errorf("%w: the upload holds nothing (aborted?)", errdefs.ErrSizeMismatch)
	}
	return classify(err, "copy "+tail+" to "+key)
}

// readPart reads the first n bytes of key, which must have them, as a
// part (in memory, or spooled when large).
func (d *Driver) readPart(ctx context.Context, key string, n int64) (part, error) {
	rc, err := d.getRange(ctx, key, 0, n)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s is gone (aborted?)", errdefs.ErrSizeMismatch, key)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	p, got, err := d.fill(&exactly{r: rc, n: n}, n)
	if err != nil && !errors.Is(err, io.EOF) {
		p.Close()
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if got != n {
		p.Close()
		return nil, fmt.Errorf("read %s: %d of %d bytes", key, got, n)
	}
	return p, nil
}

// sealedKey is where complete records the state it completes the upload
// at: the data object then holds exactly those bytes.
func sealedKey(prefix string) string { return prefix + "sealed" }

// complete completes the multipart upload of st into the upload's data
// object, the tail as its last part; parts past the recorded ones are left
// out. An upload already completed counts only if it was completed at this
// very state (its record says so): the data object of another attempt, of
// the same size, may hold other bytes.
func (d *Driver) complete(ctx context.Context, prefix string, st uploadState) error {
	data := dataKey(prefix)
	last := st.Next - 1
	gone := func() error {
		b, err := d.readAll(ctx, sealedKey(prefix), 4096)
		if err != nil || !bytes.Equal(b, st.encode()) {
			return fmt.Errorf("%w: the multipart upload is gone (aborted, or completed by an earlier attempt)", errdefs.ErrSizeMismatch)
		}
		return nil
	}
	if st.Tail > 0 {
		last = st.Next
		tail := tailKey(prefix, st.Next)
		var err error
		if st.TailETag != "" {
			_, err = d.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
				Bucket: &d.bucket, Key: &data, UploadId: &st.UploadID, PartNumber: aws.Int32(last),
				CopySource:        aws.String(d.bucket + "/" + tail),
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=0-%d", st.Tail-1)),
				CopySourceIfMatch: &st.TailETag,
			})
		}
		if st.TailETag == "" || httpStatus(err) == http.StatusPreconditionFailed {
			// Rewritten since it was recorded (or its ETag is unknown):
			// its first Tail bytes are still the recorded ones.
			p, rerr := d.readPart(ctx, tail, st.Tail)
			if rerr != nil {
				return rerr
			}
			_, err = d.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: &d.bucket, Key: &data, UploadId: &st.UploadID,
				PartNumber: aws.Int32(last), Body: p, ContentLength: aws.Int64(p.Len()),
			})
			p.Close()
		}
		if errorCode(err) == "NoSuchUpload" {
			return gone()
		}
		if err != nil {
			return classify(err, "write the tail as the last part of "+prefix)
		}
	}
	var parts []types.CompletedPart
	var marker *string
	for {
		out, err := d.client.ListParts(ctx, &s3.ListPartsInput{Bucket: &d.bucket, Key: &data, UploadId: &st.UploadID, PartNumberMarker: marker})
		if errorCode(err) == "NoSuchUpload" {
			return gone()
		}
		if err != nil {
			return classify(err, "list the parts of "+prefix)
		}
		for _, p := range out.Parts {
			if n := aws.ToInt32(p.PartNumber); n >= 1 && n <= last {
				parts = append(parts, types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag})
			}
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			break
		}
		marker = out.NextPartNumberMarker
	}
	for i, p := range parts {
		if aws.ToInt32(p.PartNumber) != int32(i+1) {
			return fmt.Errorf("%w: part %d of %s is missing", errdefs.ErrSizeMismatch, i+1, prefix)
		}
	}
	if len(parts) != int(last) {
		return fmt.Errorf("%w: %s has %d of its %d parts", errdefs.ErrSizeMismatch, prefix, len(parts), last)
	}
	// The state it is completed at, recorded first: the data object
	// holds exactly its bytes, and a retry at this state (after a crash,
	// a failed copy, or a ReadUpload) may take it.
	if err := d.putBytes(ctx, sealedKey(prefix), st.encode()); err != nil {
		return err
	}
	_, err := d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &d.bucket, Key: &data, UploadId: &st.UploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if errorCode(err) == "NoSuchUpload" {
		return gone()
	}
	return classify(err, "complete the multipart upload of "+prefix)
}

// readAll reads key whole, if it has at most limit bytes.
func (d *Driver) readAll(ctx context.Context, key string, limit int64) ([]byte, error) {
	rc, err := d.getRange(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s has more than %d bytes", key, limit)
	}
	return b, nil
}

// copyObject copies src to dst within the bucket, server-side: in one
// request up to copyPartSize, as a multipart copy above.
func (d *Driver) copyObject(ctx context.Context, src, dst string, size int64) error {
	if size <= d.copyPartSize {
		_, err := d.client.CopyObject(ctx, d.sseOnCopy(&s3.CopyObjectInput{
			Bucket: &d.bucket, Key: &dst, CopySource: aws.String(d.bucket + "/" + src),
		}))
		return classify(err, "copy "+src+" to "+dst)
	}
	out, err := d.client.CreateMultipartUpload(ctx, d.sseOnCreate(&s3.CreateMultipartUploadInput{
		Bucket: &d.bucket, Key: &dst, ContentType: aws.String("application/octet-stream"),
	}))
	if err != nil {
		return classify(err, "start the multipart copy to "+dst)
	}
	id := out.UploadId
	count := (size + d.copyPartSize - 1) / d.copyPartSize
	parts := make([]types.CompletedPart, count)
	errs := make([]error, count)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			first := i * d.copyPartSize
			last := min(first+d.copyPartSize, size) - 1
			n := aws.Int32(int32(i + 1))
			res, err := d.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
				Bucket: &d.bucket, Key: &dst, UploadId: id, PartNumber: n,
				CopySource: aws.String(d.bucket + "/" + src), CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
			})
			switch {
			case err != nil:
				errs[i] = classify(err, fmt.Sprintf("copy part %d of %s", i+1, src))
			case res.CopyPartResult == nil || res.CopyPartResult.ETag == nil:
				errs[i] = fmt.Errorf("copy part %d of %s: the answer has no ETag", i+1, src)
			default:
				parts[i] = types.CompletedPart{PartNumber: n, ETag: res.CopyPartResult.ETag}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		d.abortMultipart(ctx, dst, id)
		return err
	}
	_, err = d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &d.bucket, Key: &dst, UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		d.abortMultipart(ctx, dst, id)
		return classify(err, "complete the multipart copy to "+dst)
	}
	return nil
}

// ReadUpload implements storage.Ingester. An upload with parts is
// completed into its data object to be read (S3 serves no part of an
// incomplete one), and the state it was completed at recorded beside it:
// a Commit at that same state then finds it completed.
func (d *Driver) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return nil, err
	}
	st, err := decodeState(u.State, d.partSize)
	if err != nil {
		return nil, err
	}
	switch {
	case st.size() == 0:
		return io.NopCloser(bytes.NewReader(nil)), nil
	case st.UploadID == "":
		return d.getRange(ctx, tailKey(prefix, st.Next), 0, st.Tail)
	}
	if err := d.complete(ctx, prefix, st); err != nil {
		return nil, fmt.Errorf("read upload %s: %w", u.ID, err)
	}
	return d.getRange(ctx, dataKey(prefix), 0, st.size())
}

// Abort implements storage.Ingester: every object and multipart upload of
// the upload goes, found by its key prefix (listings of that upload's keys
// only, on no push or pull), so that what appends never recorded made goes
// too; the state is not needed.
func (d *Driver) Abort(ctx context.Context, u storage.Upload) error {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	return d.removeUploads(ctx, prefix, func(string) bool { return false }, 0)
}

// discard removes what upload st holds, as far as st knows it: its
// multipart upload (unless it was completed), its tail objects, its data
// object and record. Leftovers of appends never recorded are Recover's
// and the lifecycle rule's.
func (d *Driver) discard(ctx context.Context, prefix string, st uploadState, completed bool) error {
	var errs []error
	if st.UploadID != "" && !completed {
		errs = append(errs, d.abortMultipart(ctx, dataKey(prefix), &st.UploadID))
	}
	keys := []string{tailKey(prefix, st.Next)}
	if st.Stale != 0 {
		keys = append(keys, tailKey(prefix, st.Stale))
	}
	if st.UploadID != "" {
		keys = append(keys, dataKey(prefix), sealedKey(prefix))
	}
	for _, k := range keys {
		errs = append(errs, d.deleteKey(ctx, k))
	}
	return errors.Join(errs...)
}

func (d *Driver) abortMultipart(ctx context.Context, key string, id *string) error {
	_, err := d.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &key, UploadId: id})
	if err == nil || errorCode(err) == "NoSuchUpload" {
		return nil
	}
	return classify(err, "abort the multipart upload of "+key)
}

// deleteKey removes key; S3 answers a missing key with success.
func (d *Driver) deleteKey(ctx context.Context, key string) error {
	_, err := d.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &key})
	if err != nil && !errors.Is(classify(err, ""), errdefs.ErrNotFound) {
		return classify(err, "delete "+key)
	}
	return nil
}

// part is one part's bytes, buffered so that the SDK can sign them and
// send them again on a retry.
type part = objstore.Buffer

// fill reads up to size bytes of src into a part (objstore.Fill, spooled
// in the data directory when large).
func (d *Driver) fill(src io.Reader, size int64) (part, int64, error) {
	return objstore.Fill(src, size, d.spool)
}

// exactly reads n bytes of r and fails if r has fewer: a tail shorter
// than recorded is lost data, not a short blob.
type exactly struct {
	r io.Reader
	n int64
}

func (e *exactly) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if errors.Is(err, io.EOF) && e.n > 0 {
		return n, fmt.Errorf("read the tail: %w: %d bytes short", errdefs.ErrInvalidArgument, e.n)
	}
	if err == nil && e.n == 0 {
		err = io.EOF
	}
	return n, err
}

// The server-side encryption of every write.

func (d *Driver) sseOnPut(in *s3.PutObjectInput) *s3.PutObjectInput {
	in.ServerSideEncryption = d.sse.algorithm
	if d.sse.keyID != "" {
		in.SSEKMSKeyId = &d.sse.keyID
	}
	in.ContentType = aws.String("application/octet-stream")
	return in
}

func (d *Driver) sseOnCreate(in *s3.CreateMultipartUploadInput) *s3.CreateMultipartUploadInput {
	in.ServerSideEncryption = d.sse.algorithm
	if d.sse.keyID != "" {
		in.SSEKMSKeyId = &d.sse.keyID
	}
	return in
}

func (d *Driver) sseOnCopy(in *s3.CopyObjectInput) *s3.CopyObjectInput {
	in.ServerSideEncryption = d.sse.algorithm
	if d.sse.keyID != "" {
		in.SSEKMSKeyId = &d.sse.keyID
	}
	return in
}
