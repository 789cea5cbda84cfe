package server

import (
	"fmt"
	"net/http"
	"strings"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/limiter"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/settings"
)

// bootstrapSpec is the Config a registry starts with when it has none:
// Managed, one instance, the storage `berth serve --storage` names
// (memory is an emptyDir, the filesystem the default volume).
func bootstrapSpec(storageFlag string) imageregistryv1.ConfigSpec {
	spec := imageregistryv1.ConfigSpec{
		ManagementState: imageregistryv1.Managed, LogLevel: imageregistryv1.LogNormal,
		OperatorLogLevel: imageregistryv1.LogNormal, Replicas: 1, RolloutStrategy: "RollingUpdate",
	}
	spec.Storage = storageOfDriver(storageFlag)
	spec.Storage.ManagementState = imageregistryv1.Managed
	return spec
}

func storageOfDriver(name string) imageregistryv1.StorageConfig {
	if name == "memory" {
		return imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}
	}
	return imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: imageregistryv1.DefaultClaim}}
}

func describeStorage(s imageregistryv1.StorageConfig) string {
	switch {
	case s.PVC != nil:
		return "pvc volume " + s.PVC.Claim
	case s.EmptyDir != nil:
		return "emptyDir"
	}
	return strings.ToLower(strings.Join(s.StorageTypes(), ","))
}

// newLimiter is the request limiter of spec.requests, in front of
// everything but health probes, the metrics scrape and requests that
// stay open by design (watches, followed logs).
func newLimiter() *limiter.Limiter {
	return limiter.New(rejectRequest, exemptFromLimits, nil)
}

func exemptFromLimits(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/extensions/v2/metrics":
		return true
	}
	q := r.URL.Query()
	return q.Get("watch") == "true" || q.Get("watch") == "1" || q.Get("follow") == "true" ||
		strings.Contains(r.URL.Path, "/watch/")
}

func rejectRequest(w http.ResponseWriter, r *http.Request, kind limiter.Kind, l settings.Limits) {
	msg := fmt.Sprintf("too many requests: the registry's %s limit is reached (spec.requests.%s: maxRunning %d, maxInQueue %d, maxWaitInQueue %s); retry later",
		kind, kind, l.MaxRunning, l.MaxInQueue, l.MaxWait)
	if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
		registry.WriteTooManyRequests(w, r, msg)
		return
	}
	w.Header().Set("Retry-After", "1")
	for _, p := range apiserver.Paths {
		if r.URL.Path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p)) {
			apiserver.WriteStatus(w, http.StatusTooManyRequests, "TooManyRequests", msg)
			return
		}
	}
	http.Error(w, msg, http.StatusTooManyRequests)
}
