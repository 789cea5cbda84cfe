package apiserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/limiter"
)

// GarbageCollector runs a garbage collection: the server's, which holds
// the storages' drivers.
type GarbageCollector interface {
	Run(ctx context.Context, opts gc.Options) (gc.Report, error)
}

// resGarbageCollection is the subresource a collection is authorized as:
// cluster administrators create it (it deletes content of every project).
var resGarbageCollection = auth.Resource{Group: groupImageRegistry, Resource: "configs/garbagecollection"}

// collectGarbage serves POST configs/cluster/garbagecollection
// [?dryRun=All][&grace=DURATION]: it runs one collection for as long as
// the request lasts (one that is stopped is finished by the next) and
// answers its report (gc.Report).
func (s *Server) collectGarbage(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "create", resGarbageCollection, ""); err != nil {
		return err
	}
	if name := r.PathValue("name"); name != ConfigName {
		return notFound("configs.imageregistry.operator.openshift.io", name)
	}
	if s.opts.GarbageCollector == nil {
		return &StatusError{http.StatusServiceUnavailable, "ServiceUnavailable", "this server does not collect garbage"}
	}
	var opts gc.Options
	q := r.URL.Query()
	var err error
	if opts.DryRun, err = dryRunAll(q); err != nil {
		return err
	}
	if d, set, err := durationParam(q, "grace", "1h, 30m"); err != nil {
		return err
	} else if set {
		opts.Grace = &d
	}
	ctx := r.Context()
	// A collection holds a connection for as long as it takes, not a slot
	// of the registry's work.
	limiter.Detach(ctx)
	rep, err := s.opts.GarbageCollector.Run(ctx, opts)
	switch {
	case errors.Is(err, gc.ErrRunning):
		return &StatusError{http.StatusConflict, "Conflict", "a garbage collection is already running on this instance; try again when it ends"}
	case errors.Is(err, gc.ErrReadOnly):
		return &StatusError{http.StatusConflict, "Conflict", gc.ErrReadOnly.Error()}
	}
	if err != nil && rep.Started.IsZero() {
		return err
	}
	if err != nil {
		rep.Errors = append(rep.Errors, "the collection stopped: "+err.Error()+"; run it again to finish")
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// durationParam reads parameter name of an action: one duration of 0s or
// more, or absent (set false); examples go in the refusal.
func durationParam(q url.Values, name, examples string) (d time.Duration, set bool, err error) {
	v := q[name]
	if len(v) == 0 {
		return 0, false, nil
	}
	d, err = time.ParseDuration(v[0])
	if err != nil || d < 0 || len(v) > 1 {
		return 0, false, badRequest("%s=%q: want one duration of 0s or more (%s)", name, v, examples)
	}
	return d, true, nil
}

// dryRunAll reads the dryRun parameter of an action (All, or absent).
func dryRunAll(q url.Values) (bool, error) {
	switch v := q["dryRun"]; {
	case len(v) == 0:
		return false, nil
	case len(v) == 1 && v[0] == "All":
		return true, nil
	default:
		return false, badRequest("dryRun=%q: the only dry run is All", v)
	}
}
