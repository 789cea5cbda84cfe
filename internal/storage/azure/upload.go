package azure

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// layout cuts a session into blocks of its data blob: blocks 1..Next-1
// are committed by the append that recorded them (objstore.Pieces).
var layout = objstore.PieceLayout{Size: blockSize, Max: maxBlocks, Driver: "azure", Piece: "block"}

// blockID is the ID of block n: every ID of a blob has one length.
func blockID(n int32) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "berth-%010d", n))
}

// blockIDs are the IDs of blocks 1..n-1.
func blockIDs(n int32) []string {
	ids := make([]string, 0, n-1)
	for i := int32(1); i < n; i++ {
		ids = append(ids, blockID(i))
	}
	return ids
}

func dataName(prefix string) string { return prefix + "data" }

// writeTimeout bounds the staging and commit of what a client sent once
// the request is over (the client went away).
const writeTimeout = 2 * time.Minute

// Append implements storage.Ingester: the bytes are staged as blocks of
// the session's data blob (a short last block topped up first), and the
// blob's block list committed with them, so that the data blob always
// holds what the state records (and can be read back).
func (d *Driver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return 0, u.State, err
	}
	st, err := layout.Decode(u.State)
	if err != nil {
		return 0, u.State, err
	}
	_, start, err := layout.Start(u.ID, st, offset)
	if err != nil {
		return 0, u.State, err
	}
	// The writes outlive a client that hangs up mid-body, so that what it
	// sent is kept; they are bounded once the request is over.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(writeTimeout, cancel) })
	defer stop()
	data := d.container.NewBlockBlobClient(dataName(prefix))
	before, err := d.readBack(ctx, data, start, offset)
	if err != nil {
		return 0, u.State, err
	}
	res, err := layout.Append(u.ID, st, offset, before, r, func(n int32, buf objstore.Buffer, _ int64) error {
		if _, err := data.StageBlock(wctx, blockID(n), buf, nil); err != nil {
			return classify(err, fmt.Sprintf("stage block %d of %s", n, prefix))
		}
		return nil
	})
	if err != nil {
		return 0, u.State, err
	}
	if !res.Changed {
		return 0, u.State, res.ClientErr // nothing sent, nothing changed
	}
	if _, err := data.CommitBlockList(wctx, blockIDs(res.State.Next), nil); err != nil {
		return 0, u.State, classify(err, "commit the blocks of "+prefix)
	}
	return res.N, res.State.Encode(), res.ClientErr
}

// readBack reads bytes [from, to) of the data blob: the first bytes of a
// block staged again.
func (d *Driver) readBack(ctx context.Context, data *blockblob.Client, from, to int64) ([]byte, error) {
	if to <= from {
		return nil, nil
	}
	resp, err := data.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: from, Count: to - from}})
	if err != nil {
		err = classify(err, "read back a block")
		if errors.Is(err, errdefs.ErrNotFound) {
			// The recorded bytes are gone (aborted): the session is lost.
			return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, to-from))
	if err != nil {
		return nil, classify(err, "read back a block")
	}
	if int64(len(b)) != to-from {
		return nil, fmt.Errorf("azure read back a block: %d of %d bytes: %w", len(b), to-from, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// ReadUpload implements storage.Ingester: the recorded bytes of the data
// blob.
func (d *Driver) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return nil, err
	}
	st, err := layout.Decode(u.State)
	if err != nil {
		return nil, err
	}
	if st.Size == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	resp, err := d.container.NewBlobClient(dataName(prefix)).DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Count: st.Size}})
	if err != nil {
		return nil, classify(err, "read "+dataName(prefix))
	}
	return resp.Body, nil
}

// Commit implements storage.Ingester: the data blob, with the recorded
// blocks committed, is copied block by block into the blob's name (Put
// Block From URL, pinned to the data blob's ETag, then one block list,
// only where no blob is: the blob appears whole or not at all, and a blob
// another commit published meanwhile stays), and then deleted.
func (d *Driver) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	key, prefix, st, err := layout.Committing(u, dgst, size)
	if err != nil {
		return err
	}
	dst := d.container.NewBlockBlobClient(key)
	data := d.container.NewBlockBlobClient(dataName(prefix))
	// The blob's name is its content: a blob there of its size is it.
	found, err := d.stat(ctx, key)
	switch {
	case err != nil:
		return err
	case found.exists && found.size == size:
		d.deleteBlob(ctx, dataName(prefix))
		return nil
	}
	// Only over what was there: nothing, or a blob of another size.
	cond := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}
	if found.exists {
		cond.ModifiedAccessConditions = &blob.ModifiedAccessConditions{IfMatch: &found.etag}
	}
	if size == 0 {
		_, err := dst.Upload(ctx, nopSeekCloser{bytes.NewReader(nil)}, &blockblob.UploadOptions{AccessConditions: cond})
		if err != nil && !d.published(ctx, key, size, err) {
			return classify(err, "write empty blob "+dgst.String())
		}
		d.deleteBlob(ctx, dataName(prefix))
		return nil
	}
	source, err := d.stat(ctx, dataName(prefix))
	switch {
	case err != nil:
		return err
	case !source.exists:
		return fmt.Errorf("commit upload %s: %w: its data is gone (aborted?)", u.ID, errdefs.ErrSizeMismatch)
	case source.size != size:
		// An append never recorded committed other blocks: back to the
		// recorded ones, and checked again.
		if _, err := data.CommitBlockList(ctx, blockIDs(st.Next), nil); err != nil {
			return classify(err, "commit the recorded blocks of "+prefix)
		}
		if source, err = d.stat(ctx, dataName(prefix)); err != nil {
			return err
		}
		if source.size != size {
			return fmt.Errorf("commit upload %s: %w: its data holds %d bytes, not the %d recorded", u.ID, errdefs.ErrSizeMismatch, source.size, size)
		}
	}
	var ids []string
	for off, i := int64(0), int32(1); off < size; off, i = off+d.copyRangeSize, i+1 {
		// Signed for each block (a local HMAC): a long copy outlives no
		// signature.
		from, err := data.GetSASURL(sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour), nil)
		if err != nil {
			return fmt.Errorf("azure sign a copy source: %w", err)
		}
		id, count := blockID(i), min(d.copyRangeSize, size-off)
		_, err = dst.StageBlockFromURL(ctx, id, from, &blockblob.StageBlockFromURLOptions{
			Range:                          blob.HTTPRange{Offset: off, Count: count},
			SourceModifiedAccessConditions: &blob.SourceModifiedAccessConditions{SourceIfMatch: &source.etag},
		})
		if err != nil {
			return classify(err, fmt.Sprintf("copy bytes %d-%d of %s into %s", off, off+count-1, prefix, key))
		}
		ids = append(ids, id)
	}
	committed, err := dst.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{AccessConditions: cond})
	if err != nil {
		if d.published(ctx, key, size, err) {
			d.deleteBlob(ctx, dataName(prefix))
			return nil
		}
		return classify(err, "commit blob "+dgst.String())
	}
	got, err := d.stat(ctx, key)
	if err != nil {
		// Not known to be wrong: a retry finds it, or replaces it.
		return err
	}
	if got.size != size {
		if committed.ETag != nil {
			_, _ = dst.Delete(context.WithoutCancel(ctx), &blob.DeleteOptions{AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: committed.ETag}}})
		}
		return fmt.Errorf("azure commit blob %s: it reads back with %d bytes, not %d", dgst, got.size, size)
	}
	d.deleteBlob(ctx, dataName(prefix))
	return nil
}

// object is what stat found of a blob.
type object struct {
	exists bool
	size   int64
	etag   azcore.ETag
}

// stat reads a blob's size and ETag.
func (d *Driver) stat(ctx context.Context, name string) (object, error) {
	props, err := d.container.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		if err := classify(err, "get "+name); errors.Is(err, errdefs.ErrNotFound) {
			return object{}, nil
		} else {
			return object{}, err
		}
	}
	o := object{exists: true}
	if props.ContentLength != nil {
		o.size = *props.ContentLength
	}
	if props.ETag != nil {
		o.etag = *props.ETag
	}
	return o, nil
}

// published tells whether a write of key that failed with err lost to
// another that published key with size bytes (its condition failed).
func (d *Driver) published(ctx context.Context, key string, size int64, err error) bool {
	if status := responseStatus(err); status != http.StatusConflict && status != http.StatusPreconditionFailed {
		return false
	}
	found, serr := d.stat(ctx, key)
	return serr == nil && found.exists && found.size == size
}

type nopSeekCloser struct{ io.ReadSeeker }

func (nopSeekCloser) Close() error { return nil }

// deleteBlob removes a blob, leaving one it cannot to Abort and Recover.
func (d *Driver) deleteBlob(ctx context.Context, name string) {
	_, _ = d.container.NewBlobClient(name).Delete(context.WithoutCancel(ctx), nil)
}

// Abort implements storage.Ingester: the session's one blob (blocks
// never committed go with it, or within the week Azure keeps them).
func (d *Driver) Abort(ctx context.Context, u storage.Upload) error {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	_, err = d.container.NewBlobClient(dataName(prefix)).Delete(ctx, nil)
	if err := classify(err, "delete "+dataName(prefix)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	return nil
}

// Recover implements storage.Recoverer: data blobs of upload sessions
// that no longer exist go. It lists the upload blobs once, at start, and
// leaves alone any name not of Berth's shape and anything younger than
// recoverGrace (what another registry on the same container may be
// writing).
func (d *Driver) Recover(ctx context.Context, live func(id string) bool) error {
	return d.removeUploads(ctx, objstore.UploadsPrefix, live, d.recoverGrace)
}

// uploadBlob matches the names of upload sessions' blobs, and names the
// session.
var uploadBlob = regexp.MustCompile(`^upload-([a-z0-9]{1,128})\.data$`)

func (d *Driver) removeUploads(ctx context.Context, prefix string, live func(string) bool, grace time.Duration) error {
	cutoff := time.Now().Add(-grace)
	return d.deleteListed(ctx, prefix, func(name string, modified time.Time) bool {
		m := uploadBlob.FindStringSubmatch(name)
		// With no grace, no clock is compared (the server's may be ahead).
		return m != nil && !live(m[1]) && (grace == 0 || !modified.After(cutoff))
	})
}

// deleteListed lists the blobs under prefix and deletes those doomed
// says must go.
func (d *Driver) deleteListed(ctx context.Context, prefix string, doomed func(name string, modified time.Time) bool) error {
	pager := d.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	var errs []error
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return classify(err, "list "+prefix)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil || item.Properties == nil || item.Properties.LastModified == nil || !doomed(*item.Name, *item.Properties.LastModified) {
				continue
			}
			if _, err := d.container.NewBlobClient(*item.Name).Delete(ctx, nil); err != nil && !errors.Is(classify(err, ""), errdefs.ErrNotFound) {
				errs = append(errs, classify(err, "delete "+*item.Name))
			}
		}
	}
	return errors.Join(errs...)
}
