package azure

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// uploadState is what the driver keeps about an upload between requests:
// two numbers. The session's bytes are the first Size bytes of its data
// blob, blocks 1..Next-1 as committed by the append that recorded them.
type uploadState struct {
	// Next is the number of the next block to stage (from 1). Blocks with
	// this number or higher are left over from an append never recorded:
	// they are staged again, or left out.
	Next int32 `json:"n"`
	// Size is how many bytes the session holds.
	Size int64 `json:"z"`
}

func decodeState(b []byte) (uploadState, error) {
	st := uploadState{Next: 1}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Next < 1 || st.Next > maxBlocks+1 || st.Size < 0 || (st.Next == 1) != (st.Size == 0) {
		return st, fmt.Errorf("azure upload state %q: %w", b, errdefs.ErrInvalidArgument)
	}
	return st, nil
}

func (st uploadState) encode() []byte {
	b, _ := json.Marshal(st) // a struct of numbers
	return b
}

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

// Append implements storage.Ingester: the bytes are staged as blocks of
// the session's data blob, and the blob's block list committed with
// them, so that the data blob always holds what the state records (and
// can be read back).
func (d *Driver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return 0, u.State, err
	}
	st, err := decodeState(u.State)
	if err != nil {
		return 0, u.State, err
	}
	data := d.container.NewBlockBlobClient(dataName(prefix))
	next, kept := st.Next, int64(0)
	switch {
	case offset > st.Size:
		return 0, u.State, fmt.Errorf("append to upload %s at %d: %w: it holds %d bytes", u.ID, offset, errdefs.ErrInvalidArgument, st.Size)
	case offset < st.Size:
		// A caller that recorded fewer bytes than the state holds: the
		// blocks from the one holding offset on are staged again, that
		// one with the bytes it keeps.
		if next, kept, err = d.restage(ctx, data, st, offset); err != nil {
			return 0, u.State, err
		}
	}
	client := &objstore.ClientReader{R: r}
	var n int64
	for {
		if next > maxBlocks {
			return 0, u.State, fmt.Errorf("append to upload %s: %w: it has %d blocks, Azure's limit (send larger chunks)", u.ID, errdefs.ErrInvalidArgument, maxBlocks)
		}
		buf, m, rerr := objstore.Fill(client, blockSize, "")
		if m > 0 {
			_, err := data.StageBlock(context.WithoutCancel(ctx), blockID(next), buf, nil)
			buf.Close()
			if err != nil {
				return 0, u.State, classify(err, fmt.Sprintf("stage block %d of %s", next, prefix))
			}
			next++
			n += m
		}
		if rerr != nil || m < blockSize {
			if rerr != nil && client.Err == nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
				return 0, u.State, rerr
			}
			break
		}
	}
	if next == st.Next && kept == 0 {
		return 0, u.State, client.Err // nothing sent
	}
	// The commit outlives a client that hung up mid-body, so that what it
	// sent is kept.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := data.CommitBlockList(cctx, blockIDs(next), nil); err != nil {
		return 0, u.State, classify(err, "commit the blocks of "+prefix)
	}
	return n, uploadState{Next: next, Size: offset + n}.encode(), client.Err
}

// restage stages again the blocks from the one that holds offset on: that
// one with its bytes before offset (read from the data blob, where the
// append that recorded them committed them). It returns the number of the
// next block and how many bytes the restaged one holds.
func (d *Driver) restage(ctx context.Context, data *blockblob.Client, st uploadState, offset int64) (int32, int64, error) {
	list, err := data.GetBlockList(ctx, blockblob.BlockListTypeCommitted, nil)
	if err != nil {
		return 0, 0, classify(err, "get the blocks of "+dataName(""))
	}
	var start int64
	for i, b := range list.CommittedBlocks {
		n := int32(i + 1)
		if n >= st.Next || b.Size == nil {
			break
		}
		end := start + *b.Size
		if offset < end {
			kept := offset - start
			if kept == 0 {
				return n, 0, nil
			}
			resp, err := data.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: start, Count: kept}})
			if err != nil {
				return 0, 0, classify(err, "read a block back")
			}
			buf, m, err := objstore.Fill(resp.Body, kept, "")
			resp.Body.Close()
			if m != kept {
				return 0, 0, fmt.Errorf("azure read a block back: %d of %d bytes: %v", m, kept, err)
			}
			if _, err := data.StageBlock(ctx, blockID(n), buf, nil); err != nil {
				return 0, 0, classify(err, "stage a block again")
			}
			return n + 1, kept, nil
		}
		start = end
	}
	return 0, 0, fmt.Errorf("append at %d: %w: the upload's committed blocks do not reach it", offset, errdefs.ErrInvalidArgument)
}

// ReadUpload implements storage.Ingester: the recorded bytes of the data
// blob.
func (d *Driver) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return nil, err
	}
	st, err := decodeState(u.State)
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
// Block From URL, then one block list: the blob appears whole or not at
// all), and then deleted.
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
	dst := d.container.NewBlockBlobClient(key)
	// The blob's name is its content: a blob there of its size is it.
	if props, err := dst.GetProperties(ctx, nil); err == nil && props.ContentLength != nil && *props.ContentLength == size {
		d.deleteBlob(ctx, dataName(prefix))
		return nil
	} else if err != nil && !errors.Is(classify(err, ""), errdefs.ErrNotFound) {
		return classify(err, "get blob "+dgst.String())
	}
	if size == 0 {
		if _, err := dst.Upload(ctx, nopSeekCloser{bytes.NewReader(nil)}, nil); err != nil {
			return classify(err, "write empty blob "+dgst.String())
		}
		return nil
	}
	data := d.container.NewBlockBlobClient(dataName(prefix))
	props, err := data.GetProperties(ctx, nil)
	if errors.Is(classify(err, ""), errdefs.ErrNotFound) {
		return fmt.Errorf("commit upload %s: %w: its data is gone (aborted?)", u.ID, errdefs.ErrSizeMismatch)
	}
	if err != nil {
		return classify(err, "get "+dataName(prefix))
	}
	if props.ContentLength == nil || *props.ContentLength != size {
		// An append never recorded committed more blocks: back to the
		// recorded ones.
		if _, err := data.CommitBlockList(ctx, blockIDs(st.Next), nil); err != nil {
			return classify(err, "commit the recorded blocks of "+prefix)
		}
	}
	source, err := data.GetSASURL(sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		return fmt.Errorf("azure sign a copy source: %w", err)
	}
	var ids []string
	for off, i := int64(0), int32(1); off < size; off, i = off+d.copyRangeSize, i+1 {
		id := blockID(i)
		count := min(d.copyRangeSize, size-off)
		if _, err := dst.StageBlockFromURL(ctx, id, source, &blockblob.StageBlockFromURLOptions{Range: blob.HTTPRange{Offset: off, Count: count}}); err != nil {
			return classify(err, fmt.Sprintf("copy bytes %d-%d of %s into %s", off, off+count-1, prefix, key))
		}
		ids = append(ids, id)
	}
	if _, err := dst.CommitBlockList(ctx, ids, nil); err != nil {
		return classify(err, "commit blob "+dgst.String())
	}
	if props, err := dst.GetProperties(ctx, nil); err != nil || props.ContentLength == nil || *props.ContentLength != size {
		_, _ = dst.Delete(context.WithoutCancel(ctx), nil)
		return fmt.Errorf("azure commit blob %s: it does not read back with %d bytes (%v)", dgst, size, err)
	}
	d.deleteBlob(ctx, dataName(prefix))
	return nil
}

type nopSeekCloser struct{ io.ReadSeeker }

func (nopSeekCloser) Close() error { return nil }

// deleteBlob removes a blob, leaving one it cannot to Abort and Recover.
func (d *Driver) deleteBlob(ctx context.Context, name string) {
	_, _ = d.container.NewBlobClient(name).Delete(context.WithoutCancel(ctx), nil)
}

// Abort implements storage.Ingester: the session's data blob, found by
// its prefix (blocks never committed go with it, or within the week
// Azure keeps them).
func (d *Driver) Abort(ctx context.Context, u storage.Upload) error {
	prefix, err := objstore.UploadPrefix(u.ID)
	if err != nil {
		return err
	}
	return d.removeUploads(ctx, prefix, func(string) bool { return false }, 0)
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
		return m != nil && !live(m[1]) && !modified.After(cutoff)
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
