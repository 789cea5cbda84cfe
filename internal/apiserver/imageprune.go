package apiserver

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/limiter"
	"github.com/berth-registry/berth/internal/prune"
)

// ImagePruner runs an image pruning: the server's.
type ImagePruner interface {
	Run(ctx context.Context, opts prune.Options) (prune.Report, error)
}

// pruneRights are what a pruning needs everywhere, the reference's
// system:image-pruner role: to delete images and to write image streams'
// status (their tag histories).
var pruneRights = []struct {
	verb string
	res  auth.Resource
}{
	{"delete", resImages},
	{"update", auth.Resource{Group: groupImage, Resource: "imagestreams/status"}},
}

// pruneImages serves POST imagepruners/cluster/prune
// [?dryRun=All][&keepTagRevisions=N][&keepYoungerThan=DURATION] (the
// reference's defaults, 3 and 60m, when absent): it runs one pruning of
// every repository and answers its report (prune.Report).
func (s *Server) pruneImages(w http.ResponseWriter, r *http.Request) error {
	for _, need := range pruneRights {
		if err := s.authorize(r, need.verb, need.res, ""); err != nil {
			return err
		}
	}
	if name := r.PathValue("name"); name != ConfigName {
		return notFound("imagepruners.imageregistry.operator.openshift.io", name)
	}
	if s.opts.ImagePruner == nil {
		return &StatusError{http.StatusServiceUnavailable, "ServiceUnavailable", "this server does not prune images"}
	}
	opts := prune.Options{Confirm: true, KeepTagRevisions: prune.DefaultKeepTagRevisions, KeepYoungerThan: prune.DefaultKeepYoungerThan}
	q := r.URL.Query()
	dry, err := dryRunAll(q)
	if err != nil {
		return err
	}
	opts.Confirm = !dry
	if v := q["keepTagRevisions"]; len(v) > 0 {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 || len(v) > 1 {
			return badRequest("keepTagRevisions=%q: want one number, 0 or more", v)
		}
		opts.KeepTagRevisions = n
	}
	if d, set, err := durationParam(q, "keepYoungerThan", "60m, 24h"); err != nil {
		return err
	} else if set {
		opts.KeepYoungerThan = d
	}
	ctx := r.Context()
	limiter.Detach(ctx)
	rep, err := s.opts.ImagePruner.Run(ctx, opts)
	switch {
	case errors.Is(err, prune.ErrRunning):
		return &StatusError{http.StatusConflict, "Conflict", "an image pruning is already running on this instance; try again when it ends"}
	case errors.Is(err, prune.ErrReadOnly):
		return &StatusError{http.StatusConflict, "Conflict", prune.ErrReadOnly.Error()}
	}
	if err != nil && rep.Started.IsZero() {
		return err
	}
	if err != nil {
		rep.Errors = append(rep.Errors, "the pruning stopped: "+err.Error()+"; run it again to finish")
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}
