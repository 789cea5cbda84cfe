package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/limiter"
	"github.com/berth-registry/berth/internal/storagemigration"
)

// StorageMigrator moves the blobs of older storages into the storage in
// effect: the server's, which holds the drivers and their credentials.
type StorageMigrator interface {
	MigrateStorage(ctx context.Context, dryRun bool, progress func(storagemigration.Progress)) (storagemigration.Report, error)
}

// resStorageMigration is the subresource a migration is authorized as:
// cluster administrators create it (it reads and deletes every blob of
// the older storages).
var resStorageMigration = auth.Resource{Group: groupImageRegistry, Resource: "configs/storagemigration"}

// MigrationEvent is one line of a storage migration's stream: Progress
// after blobs, then Done with the report or Error.
type MigrationEvent struct {
	Type     string                     `json:"type"`
	Progress *storagemigration.Progress `json:"progress,omitempty"`
	Report   *storagemigration.Report   `json:"report,omitempty"`
	Message  string                     `json:"message,omitempty"`
}

// migrationFlushEvery paces the progress lines: a line per blob would
// cost more than small blobs take to move.
const migrationFlushEvery = 250 * time.Millisecond

// migrateStorage serves POST configs/cluster/storagemigration[?dryRun=All]:
// it runs a migration for as long as the request lasts (a client that goes
// away stops it; running it again resumes it), streaming its progress as
// lines of JSON (MigrationEvent).
func (s *Server) migrateStorage(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "create", resStorageMigration, ""); err != nil {
		return err
	}
	if name := r.PathValue("name"); name != ConfigName {
		return notFound("configs.imageregistry.operator.openshift.io", name)
	}
	if s.opts.StorageMigrator == nil {
		return &StatusError{http.StatusServiceUnavailable, "ServiceUnavailable", "this server does not migrate storage"}
	}
	dryRun, err := dryRunAll(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	// A migration holds a connection for as long as it takes, not a slot
	// of the registry's work.
	limiter.Detach(ctx)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	ctl := http.NewResponseController(w)
	// The migrator calls progress on this goroutine: no lock.
	started := false
	enc := json.NewEncoder(w)
	var flushed time.Time
	send := func(ev MigrationEvent, force bool) {
		if !force && time.Since(flushed) < migrationFlushEvery {
			return
		}
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_ = enc.Encode(ev) // a client gone shows as ctx ending
		_ = ctl.Flush()
		flushed = time.Now()
	}
	var last storagemigration.Progress
	rep, err := s.opts.StorageMigrator.MigrateStorage(ctx, dryRun, func(p storagemigration.Progress) {
		last = p
		send(MigrationEvent{Type: "Progress", Progress: &p}, false)
	})
	if err != nil && !started {
		// Refused before it began (another one runs, nothing in effect):
		// an ordinary error answer.
		return err
	}
	if last.TotalBlobs > 0 {
		send(MigrationEvent{Type: "Progress", Progress: &last}, true)
	}
	if err != nil {
		send(MigrationEvent{Type: "Error", Report: &rep, Message: fmt.Sprintf("the migration stopped: %v; run it again to resume", err)}, true)
		return nil
	}
	send(MigrationEvent{Type: "Done", Report: &rep}, true)
	return nil
}
