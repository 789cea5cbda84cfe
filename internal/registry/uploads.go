package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// newUploadID returns 256 random bits in hex: unguessable, and safe as a
// file name for every driver.
func newUploadID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func uploadLocation(repo, id string) string { return "/v2/" + repo + "/blobs/uploads/" + id }

func blobLocation(repo string, dgst digest.Digest) string {
	return "/v2/" + repo + "/blobs/" + dgst.String()
}

// keptOtherBytes says that the driver kept n of the read bytes the hash
// covers: the upload can no longer be trusted.
func keptOtherBytes(read, n int64) error {
	return &Error{Code: codeInternal, Message: "the storage kept a different number of bytes than were sent; push the blob again",
		Err: fmt.Errorf("the driver read %d bytes and kept %d", read, n)}
}

// startUpload serves POST /v2/<name>/blobs/uploads/: a mount, a monolithic
// upload (?digest=), or a new session.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, repo string) error {
	ctx := req.Context()
	st := r.storageOf(ctx)
	q := req.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		dgst, err := names.Digest(mount)
		if err != nil {
			return newError(codeDigestInvalid, "invalid mount digest %q: %v", mount, err)
		}
		mounted, err := r.mount(ctx, r.readableOf(ctx), repo, dgst, q.Get("from"), q.Has("from"))
		if err != nil {
			return err
		}
		if mounted {
			return blobCreated(w, repo, dgst)
		}
		// Not mountable: fall through to a new session, as the spec says.
	} else if d := q.Get("digest"); d != "" || q.Has("digest") {
		dgst, err := names.Digest(d)
		if err != nil {
			return newError(codeDigestInvalid, "invalid digest %q: %v", d, err)
		}
		return r.monolithicUpload(w, req, repo, dgst, st)
	}
	id := newUploadID()
	owner := auth.IdentityFrom(ctx).User.Name
	if err := r.meta.CreateUpload(ctx, store.Upload{ID: id, Repository: repo, Owner: owner, Storage: st.ID}, r.uploadLimits); err != nil {
		if limit, ok := errors.AsType[*store.UploadLimitError](err); ok {
			return &Error{Code: codeTooManyRequests, Err: err, Header: http.Header{"Retry-After": {"60"}},
				Message: limit.Error() + " (" + strconv.Itoa(limit.Limit) + " per " + limit.Scope +
					"); finish or cancel (DELETE) open uploads, or wait for untouched ones to expire"}
		}
		return fromClass(err, codeBlobUploadUnknown, "upload")
	}
	writeUploadHeaders(ctx, w, repo, store.Upload{ID: id})
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mount links dgst into repo from another repository that holds it in
// one of the readable storages (its bytes stay where they are): from, or, when the request names no source,
// any repository. Only a source the caller may pull from counts; any other
// is reported as not mountable, so a mount never tells whether someone
// else's repository holds a blob.
func (r *Registry) mount(ctx context.Context, in store.Storages, repo string, dgst digest.Digest, from string, named bool) (bool, error) {
	if named && names.Repository(from) != nil {
		return false, nil // a bad source is just not mountable
	}
	user := auth.IdentityFrom(ctx).User
	if named {
		if ok, err := r.pullable(ctx, user, from); err != nil || !ok {
			return false, err
		}
	} else if _, all, err := r.visibleProjects(ctx, user); err != nil {
		return false, err
	} else if !all {
		source, err := r.pullableHolder(ctx, user, dgst)
		if err != nil || source == "" {
			return false, err
		}
		from = source
	}
	mounted, err := r.meta.MountBlob(ctx, in, repo, from, dgst)
	if err != nil {
		return false, fromClass(err, codeBlobUnknown, "blob "+dgst.String())
	}
	return mounted, nil
}

// pullableHolder returns a repository holding dgst that user may pull
// from, "" if none (among the first few holders).
func (r *Registry) pullableHolder(ctx context.Context, user auth.User, dgst digest.Digest) (string, error) {
	holders, err := r.projects.RepositoriesWithBlob(ctx, dgst, 50)
	if err != nil {
		return "", err
	}
	for _, h := range holders {
		if ok, err := r.pullable(ctx, user, h); err != nil || ok {
			return h, err
		}
	}
	return "", nil
}

// monolithicUpload stores a whole blob sent with POST ?digest= in st.
func (r *Registry) monolithicUpload(w http.ResponseWriter, req *http.Request, repo string, dgst digest.Digest, st settings.Storage) error {
	ctx := req.Context()
	// Never recorded: a crash leaves bytes the driver's Recover removes.
	up := storage.Upload{ID: newUploadID()}
	h := dgst.Algorithm().Hash()
	src := &clientReader{r: req.Body}
	hr := &storage.HashingReader{R: src, Hash: h}
	n, state, err := st.Driver.Append(ctx, up, 0, hr)
	up.State = state
	if err == nil && hr.N != n {
		_ = st.Driver.Abort(context.WithoutCancel(ctx), up)
		return keptOtherBytes(hr.N, n)
	}
	if err != nil {
		_ = st.Driver.Abort(context.WithoutCancel(ctx), up)
		switch {
		case errors.Is(err, errdefs.ErrTimeout):
			return &Error{Code: codeBodyTimeout, Message: err.Error(), Err: err}
		case src.err != nil && errors.Is(err, src.err):
			return &Error{Code: codeBlobUploadInvalid, Err: err,
				Message: fmt.Sprintf("the blob stopped after %d bytes (%v); push it again", n, src.err)}
		}
		// The storage failed (full: 507; else 500, logged): its words may
		// name a path, so they go to the log only.
		return fromClass(err, codeBlobUploadInvalid, "blob")
	}
	if got := digest.NewDigest(dgst.Algorithm(), h); got != dgst {
		_ = st.Driver.Abort(ctx, up)
		return digestMismatch("content", dgst, got)
	}
	if err := r.commitBlob(ctx, st, repo, up, dgst, n, false); err != nil {
		return err
	}
	return blobCreated(w, repo, dgst)
}

// commitBlob publishes upload up as dgst in st and links it into repo;
// session says whether a recorded upload session (whose bytes are in st)
// ends with it.
func (r *Registry) commitBlob(ctx context.Context, st settings.Storage, repo string, up storage.Upload, dgst digest.Digest, size int64, session bool) error {
	// Finish what the client was told is done even if it hangs up now.
	ctx = context.WithoutCancel(ctx)
	// The commit and the record of where the bytes are happen together,
	// or not at all once the storage is being removed: a record of bytes
	// removed would make the blob look present forever.
	leave, ok := st.Writes.Enter()
	if !ok {
		if session {
			r.abortSession(ctx, st.Driver, up)
		} else {
			_ = st.Driver.Abort(ctx, up)
		}
		return &Error{Code: codeUnavailable, Message: "the registry's storage was removed while the blob arrived; push it again when the registry serves", Err: errors.New("storage " + st.ID + " removed")}
	}
	defer leave()
	// Claimed before the bytes are published: the garbage collector
	// leaves the blob alone from here on, and recording it below checks
	// that it did.
	claim, err := r.meta.ClaimBlob(ctx, st.ID, dgst, size)
	if err != nil {
		if !session {
			_ = st.Driver.Abort(ctx, up)
		}
		// A session stays: the client retries the PUT.
		return fromClass(err, codeBlobUploadInvalid, "upload")
	}
	if err := st.Driver.Commit(ctx, up, dgst, size); err != nil {
		if !session {
			_ = st.Driver.Abort(ctx, up)
			return fromClass(err, codeBlobUploadInvalid, "upload")
		}
		if errors.Is(err, errdefs.ErrUnavailable) {
			// Nothing was made durable yet: a retried PUT can finish.
			return &Error{Code: codeUnavailable, Header: http.Header{"Retry-After": {"1"}},
				Message: "the blob could not be stored now; retry the PUT", Err: err}
		}
		// The session ends: the driver holds fewer bytes than it recorded,
		// or could not make them durable. Its bytes were checked as they
		// streamed in, not as they lie on disk, and a sync reports a lost
		// write once only: a retry could publish what the disk failed to
		// keep.
		r.abortSession(ctx, st.Driver, up)
		return lostUpload(err)
	}
	if session {
		err = r.meta.CommitUpload(ctx, up.ID, repo, claim)
	} else {
		err = r.meta.LinkClaimed(ctx, st.ID, repo, claim)
	}
	var collected *store.BlobCollectedError
	if errors.As(err, &collected) {
		// Its bytes may be gone: nothing is recorded, and the session
		// ends (the client pushes the blob again).
		if session {
			r.abortSession(ctx, st.Driver, up)
		}
		return &Error{Code: codeBlobUploadUnknown, Message: collected.Error(), Err: err}
	}
	if errors.Is(err, errdefs.ErrQuotaExceeded) && session {
		// Refused for good: a retried PUT would be too. The published
		// bytes, recorded nowhere, are the collector's after the grace
		// period.
		r.abortSession(ctx, st.Driver, up)
	}
	if err != nil {
		return fromClass(err, codeBlobUploadUnknown, "upload")
	}
	return nil
}

func blobCreated(w http.ResponseWriter, repo string, dgst digest.Digest) error {
	h := w.Header()
	h.Set("Location", blobLocation(repo, dgst))
	h.Set("Docker-Content-Digest", dgst.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// digestMismatch is the answer to content that does not hash to the
// digest it was sent with.
func digestMismatch(what string, want, got digest.Digest) *Error {
	return &Error{Code: codeDigestInvalid, Message: fmt.Sprintf("%s hashes to %s, not %s", what, got, want),
		Detail: map[string]string{"expected": want.String(), "actual": got.String()}}
}

// lostUpload is the answer when the driver no longer holds bytes a session
// recorded (a crash before they were synced): the session has ended.
func lostUpload(err error) *Error {
	return &Error{Code: codeBlobUploadUnknown, Message: "upload lost data; start again", Err: err}
}

// uploadHeader is what every answer about an upload session carries.
func uploadHeader(ctx context.Context, repo string, u store.Upload) http.Header {
	return http.Header{
		"Location":           {sessionLocation(ctx, repo, u.ID)},
		"Range":              {rangeHeader(u.Size)},
		"Docker-Upload-Uuid": {u.ID},
	}
}

func writeUploadHeaders(ctx context.Context, w http.ResponseWriter, repo string, u store.Upload) {
	h := w.Header()
	for k, v := range uploadHeader(ctx, repo, u) {
		h[k] = v
	}
	h.Set("Content-Length", "0")
}

// rangeHeader reports received bytes as an inclusive range, "0-0" when none.
func rangeHeader(size int64) string {
	if size == 0 {
		return "0-0"
	}
	return "0-" + strconv.FormatInt(size-1, 10)
}

// session loads upload id of repo and locks it for this request. It
// returns the driver the session's bytes are in: the storage in effect,
// since a session of another storage ends here (endStaleSession).
func (r *Registry) session(req *http.Request, repo string) (store.Upload, storage.Driver, *lease, error) {
	id := req.PathValue("id")
	if err := checkSessionLocation(req, repo, id); err != nil {
		return store.Upload{}, nil, nil, err
	}
	ctx := req.Context()
	u, l, err := r.acquireSession(ctx, repo, id)
	if err != nil {
		return store.Upload{}, nil, nil, err
	}
	st := r.storageOf(ctx)
	if u.Storage != st.ID {
		r.endStaleSession(ctx, u, st)
		l.release(ctx)
		return store.Upload{}, nil, nil, staleSession(id)
	}
	return u, st.Driver, l, nil
}

// staleSession is the answer about a session whose bytes are in a storage
// that is no longer in effect.
func staleSession(id string) *Error {
	return newError(codeBlobUploadUnknown,
		"upload %s was started before the registry's storage was switched; its bytes stay behind: start the upload again", id)
}

// endStaleSession ends a session whose bytes are in a storage that is no
// longer in effect: finished, it would publish a blob the storage in
// effect does not hold. Its bytes are discarded where they are if this
// process has that storage built; otherwise they are left (a volume not
// used since the start is cleaned when it is next used, an emptyDir of an
// earlier process is gone already).
func (r *Registry) endStaleSession(ctx context.Context, u store.Upload, now settings.Storage) {
	ctx = context.WithoutCancel(ctx)
	if d, ok := r.storages.Built(u.Storage); ok {
		if err := d.Abort(ctx, driverUpload(u)); err != nil {
			r.log.WarnContext(ctx, "abort upload", "id", u.ID, "storage", u.Storage, "err", err)
		}
	} else {
		r.log.InfoContext(ctx, "upload bytes left in a storage this process does not use", "id", u.ID, "storage", u.Storage)
	}
	if err := r.meta.DeleteUpload(ctx, u.ID); err != nil {
		r.log.WarnContext(ctx, "delete upload session", "id", u.ID, "err", err)
	}
	r.log.InfoContext(ctx, "upload session of an earlier storage ended", "id", u.ID, "repository", u.Repository,
		"storage", u.Storage, "inEffect", now.ID)
}

// writableSession is session with the running hash of the bytes so far,
// checked when they were written before the machine restarted.
func (r *Registry) writableSession(req *http.Request, repo string) (store.Upload, storage.Driver, hash.Hash, *lease, error) {
	u, d, l, err := r.session(req, repo)
	if err != nil {
		return store.Upload{}, nil, nil, nil, err
	}
	if err := r.verifySession(req.Context(), d, &u); err != nil {
		l.release(req.Context())
		return store.Upload{}, nil, nil, nil, err
	}
	h, err := runningHash(u)
	if err != nil {
		l.release(req.Context())
		return store.Upload{}, nil, nil, nil, err
	}
	return u, d, h, l, nil
}

// runningHash restores the sha256 of the bytes an upload has received.
func runningHash(u store.Upload) (hash.Hash, error) {
	h := sha256.New()
	if len(u.HashState) == 0 {
		if u.Size != 0 {
			return nil, fmt.Errorf("upload %s has %d bytes but no hash state", u.ID, u.Size)
		}
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
		return nil, fmt.Errorf("restore hash of upload %s: %w", u.ID, err)
	}
	return h, nil
}

// appendChunk writes a request body to the session (in driver d),
// honouring its Content-Range, and moves u and h past it. With a lease
// (the request's, which the record gives back) it records the new size and
// hash state; a caller about to commit the blob passes none and skips
// that write (the commit ends the session) — until then the driver drops
// the unrecorded bytes on the next Append, as after a crash.
func (r *Registry) appendChunk(req *http.Request, repo string, d storage.Driver, u *store.Upload, h hash.Hash, record *lease) error {
	ctx := req.Context()
	body := io.Reader(req.Body)
	want := int64(-1)
	if cr := req.Header.Get("Content-Range"); cr != "" {
		start, end, err := parseContentRange(cr)
		if err != nil {
			return &Error{Code: codeRangeInvalid, Message: err.Error(), Header: uploadHeader(req.Context(), repo, *u)}
		}
		if start != u.Size {
			return &Error{Code: codeRangeInvalid, Header: uploadHeader(req.Context(), repo, *u),
				Message: fmt.Sprintf("chunk starts at %d but the upload has %d bytes; send the chunk that starts at %d", start, u.Size, u.Size)}
		}
		want = end - start + 1
		if req.ContentLength >= 0 && req.ContentLength != want {
			return newError(codeBlobUploadInvalid, "Content-Range %s covers %d bytes but Content-Length is %d", cr, want, req.ContentLength)
		}
		body = io.LimitReader(body, want)
	} else if req.ContentLength >= 0 {
		want = req.ContentLength
	}
	src := &clientReader{r: body}
	hr := &storage.HashingReader{R: src, Hash: h}
	n, state, err := d.Append(ctx, driverUpload(*u), u.Size, hr)
	if hr.N != n && (err == nil || (src.err != nil && errors.Is(err, src.err))) {
		// What would be recorded (n bytes, the hash of hr.N) disagrees:
		// the session cannot go on.
		r.abortSession(context.WithoutCancel(ctx), d, driverUpload(*u))
		return keptOtherBytes(hr.N, n)
	}
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		// The driver lost bytes it had acknowledged (a crash before a sync):
		// the session cannot continue.
		r.abortSession(ctx, d, driverUpload(*u))
		return lostUpload(err)
	}
	if err != nil && src.err != nil && errors.Is(err, src.err) {
		// The client stopped sending (hung up, or stalled and was cut off).
		// Every byte it sent was written and hashed, so the session keeps
		// them and the client can resume where it stopped. Its context may
		// be cancelled already: the bookkeeping must still happen.
		if n > 0 {
			if aerr := r.advance(context.WithoutCancel(ctx), d, u, h, n, state, record); aerr != nil {
				return aerr
			}
		}
		e := &Error{Code: codeBlobUploadInvalid, Header: uploadHeader(req.Context(), repo, *u), Err: err,
			Message: fmt.Sprintf("the chunk stopped after %d bytes (%v); the upload keeps %d bytes: resume from there", n, src.err, u.Size)}
		if errors.Is(err, errdefs.ErrTimeout) {
			e.Code = codeBodyTimeout
		}
		return e
	}
	if storageFull(err) {
		// The chunk is not kept (the session stays at its last size).
		return fromClass(err, codeBlobUploadInvalid, "upload "+u.ID)
	}
	if err != nil {
		// The storage failed, not the client: a 500, logged with the
		// driver's words, which stay out of the answer.
		return &Error{Code: codeInternal, Message: "writing the chunk failed; resume from the Range of a status request", Err: err}
	}
	if want >= 0 && n != want {
		return newError(codeBlobUploadInvalid, "chunk has %d bytes, expected %d; resume from %d", n, want, u.Size)
	}
	if record == nil {
		u.Size += n
		u.DriverState = state
		return nil
	}
	return r.advance(ctx, d, u, h, n, state, record)
}

// driverUpload is session u as its driver knows it.
func driverUpload(u store.Upload) storage.Upload {
	return storage.Upload{ID: u.ID, State: u.DriverState}
}

// advance records that upload u, in driver d, grew by n bytes whose
// running hash is h, after which the driver's state of it is state: in
// one step, so that the size recorded and what the driver needs to go on
// from it never disagree. With giveBack (the request's lease), the same
// step gives the writer lease back: the request writes no more.
func (r *Registry) advance(ctx context.Context, d storage.Driver, u *store.Upload, h hash.Hash, n int64, state []byte, giveBack *lease) error {
	hashState, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("save hash of upload %s: %w", u.ID, err)
	}
	next := store.Upload{ID: u.ID, Size: u.Size + n, HashState: hashState, Epoch: epoch(d), DriverState: state, Lease: u.Lease}
	if err := r.meta.AdvanceUpload(ctx, next, u.Size, giveBack != nil); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			// The session ended while its bytes arrived (cancelled,
			// expired, its project deleted): nothing will discard them but
			// this request.
			_ = d.Abort(context.WithoutCancel(ctx), storage.Upload{ID: u.ID, State: state})
		}
		return fromClass(err, codeBlobUploadUnknown, "upload "+u.ID)
	}
	u.Size, u.HashState, u.Epoch, u.DriverState = next.Size, next.HashState, next.Epoch, next.DriverState
	return nil
}

// epoch is a blob driver's epoch, "" when its appends are durable.
func epoch(d storage.Driver) string {
	if v, ok := d.(storage.Volatile); ok {
		return v.Epoch()
	}
	return ""
}

// verifySession checks that the driver still holds the bytes session u
// records when they were written in another epoch (the machine restarted
// since, and unsynced bytes may be gone or garbled): it reads them back
// and compares their hash with the recorded one. Intact, the session
// moves to this epoch; otherwise it has lost data and ends.
func (r *Registry) verifySession(ctx context.Context, d storage.Driver, u *store.Upload) error {
	current := epoch(d)
	if u.Size == 0 || u.Epoch == current {
		return nil
	}
	// Once begun, the check is finished and recorded even if the client
	// hangs up: abandoned, it would be paid for again by every request.
	ctx = context.WithoutCancel(ctx)
	rc, err := d.ReadUpload(ctx, driverUpload(*u))
	if err != nil {
		return fromClass(err, codeBlobUploadUnknown, "upload "+u.ID)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, u.Size))
	if err != nil {
		return fmt.Errorf("read back upload %s: %w", u.ID, err)
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("save hash of upload %s: %w", u.ID, err)
	}
	if n != u.Size || !bytes.Equal(state, u.HashState) {
		r.abortSession(ctx, d, driverUpload(*u))
		return lostUpload(fmt.Errorf("upload %s: %d of its %d bytes were read back after a restart of the machine, and they do not hash as recorded", u.ID, n, u.Size))
	}
	next := *u
	next.Epoch = current
	if err := r.meta.AdvanceUpload(ctx, next, u.Size, false); err != nil {
		return fromClass(err, codeBlobUploadUnknown, "upload "+u.ID)
	}
	u.Epoch = current
	return nil
}

// clientReader remembers the error reading a request body ended with, so
// that a failure of the client (hang-up, stall) can be told from one of
// the driver.
type clientReader struct {
	r   io.Reader
	err error
}

func (c *clientReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (r *Registry) abortSession(ctx context.Context, d storage.Driver, up storage.Upload) {
	ctx = context.WithoutCancel(ctx)
	if err := d.Abort(ctx, up); err != nil {
		r.log.WarnContext(ctx, "abort upload", "id", up.ID, "err", err)
	}
	if err := r.meta.DeleteUpload(ctx, up.ID); err != nil {
		r.log.WarnContext(ctx, "delete upload session", "id", up.ID, "err", err)
	}
}

// patchUpload serves PATCH /v2/<name>/blobs/uploads/<id>.
func (r *Registry) patchUpload(w http.ResponseWriter, req *http.Request, repo string) error {
	u, d, h, l, err := r.writableSession(req, repo)
	if err != nil {
		return err
	}
	defer l.release(req.Context())
	if err := r.appendChunk(req, repo, d, &u, h, l); err != nil {
		return err
	}
	writeUploadHeaders(req.Context(), w, repo, u)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// finishUpload serves PUT /v2/<name>/blobs/uploads/<id>?digest=, with an
// optional last chunk.
func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, repo string) error {
	raw := req.URL.Query().Get("digest")
	dgst, err := names.Digest(raw)
	if err != nil {
		return newError(codeDigestInvalid, "invalid digest %q: %v", raw, err)
	}
	u, d, h, l, err := r.writableSession(req, repo)
	if err != nil {
		return err
	}
	defer l.release(req.Context())
	if req.ContentLength != 0 {
		if err := r.appendChunk(req, repo, d, &u, h, nil); err != nil {
			return err
		}
	}
	ctx := req.Context()
	var got digest.Digest
	if dgst.Algorithm() == digest.SHA256 {
		got = digest.NewDigest(digest.SHA256, h)
	} else if got, err = rehash(ctx, d, driverUpload(u), dgst.Algorithm()); err != nil {
		return err
	}
	if got != dgst {
		r.abortSession(ctx, d, driverUpload(u))
		return digestMismatch("upload (now discarded)", dgst, got)
	}
	if err := r.commitBlob(ctx, r.storageOf(ctx), repo, driverUpload(u), dgst, u.Size, true); err != nil {
		return err
	}
	return blobCreated(w, repo, dgst)
}

// rehash reads an upload back to digest it with an algorithm other than
// the streaming sha256.
func rehash(ctx context.Context, d storage.Driver, up storage.Upload, alg digest.Algorithm) (digest.Digest, error) {
	rc, err := d.ReadUpload(ctx, up)
	if err != nil {
		return "", fromClass(err, codeBlobUploadUnknown, "upload "+up.ID)
	}
	defer rc.Close()
	got, err := alg.FromReader(rc)
	if err != nil {
		return "", fmt.Errorf("rehash upload %s: %w", up.ID, err)
	}
	return got, nil
}

// uploadStatus serves GET /v2/<name>/blobs/uploads/<id>.
func (r *Registry) uploadStatus(w http.ResponseWriter, req *http.Request, repo string) error {
	if err := checkSessionLocation(req, repo, req.PathValue("id")); err != nil {
		return err
	}
	u, err := r.meta.Upload(req.Context(), repo, req.PathValue("id"))
	if err != nil {
		return fromClass(err, codeBlobUploadUnknown, "upload "+req.PathValue("id"))
	}
	if u.Storage != r.storageOf(req.Context()).ID {
		// A read ends nothing: the next write to the session does.
		return staleSession(u.ID)
	}
	writeUploadHeaders(req.Context(), w, repo, u)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cancelUpload serves DELETE /v2/<name>/blobs/uploads/<id>.
func (r *Registry) cancelUpload(w http.ResponseWriter, req *http.Request, repo string) error {
	u, d, l, err := r.session(req, repo)
	if err != nil {
		return err
	}
	defer l.release(req.Context())
	r.abortSession(req.Context(), d, driverUpload(u))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
