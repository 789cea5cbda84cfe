// Package instance names a `berth serve` process and keeps its heartbeat
// row in the metadata store, so that every instance sharing the store can
// list the others (the management API shows them as the registry's pods,
// and the deployment's replicas count them).
package instance

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"os"
	"time"

	"github.com/berth-registry/berth/internal/buildinfo"

	"github.com/google/uuid"

	"github.com/berth-registry/berth/internal/store"
)

// The reference platform's names for the registry's workload.
const (
	Namespace  = "openshift-image-registry"
	Deployment = "image-registry"
	Container  = "registry"
	// LabelKey and LabelValue select the registry's pods.
	LabelKey   = "docker-registry"
	LabelValue = "default"
)

// Heartbeat timing: a row is renewed every Interval, believed for
// StaleAfter (a process that missed three beats is not ready) and deleted
// by the janitor ForgetAfter after its last beat.
const (
	Interval    = 10 * time.Second
	StaleAfter  = 3 * Interval
	ForgetAfter = time.Hour
)

// Identity is one process.
type Identity struct {
	ID      string // a random UUID, new at every start
	Name    string // image-registry-<hash of the version>-<5 random characters>
	Host    string
	Version string
	Started time.Time
}

// New names this process.
func New() Identity {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	v := Version()
	return Identity{
		ID: uuid.NewString(), Name: PodName(v, randomSuffix()), Host: host, Version: v,
		Started: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// Version is the version of the running binary, as the Go toolchain
// recorded it ("devel" for a build outside a module release).
func Version() string {
	if v := buildinfo.Read().Version; v != "" {
		return v
	}
	return "devel"
}

// alphabet is the characters of generated names: no vowels (no words) and
// none of the digits and letters that look alike.
const alphabet = "bcdfghjklmnpqrstvwxz2456789"

// PodName is the pod name of an instance of version with suffix. As a
// pod-template hash does on the reference, the middle part changes with
// what runs (here the version), so instances of one build share it.
func PodName(version, suffix string) string {
	return Deployment + "-" + TemplateHash(version) + "-" + suffix
}

// TemplateHash is the middle part of the pod names of version's instances
// (the reference's pod-template-hash label).
func TemplateHash(version string) string {
	h := fnv.New64a()
	h.Write([]byte("berth " + version))
	return encode(h.Sum64(), 10)
}

// encode writes n in alphabet, n characters long.
func encode(v uint64, n int) string {
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[v%uint64(len(alphabet))]
		v /= uint64(len(alphabet))
	}
	return string(out)
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	return encode(binary.LittleEndian.Uint64(b[:]), 5)
}

// Beats is what a Heartbeater needs of the store.
type Beats interface {
	Heartbeat(ctx context.Context, in store.Instance) error
	RemoveInstance(ctx context.Context, id string) error
}

// Heartbeater keeps one instance's row.
type Heartbeater struct {
	Store  Beats
	Self   Identity
	Listen string
	// Ready reports whether the instance serves and is healthy, at each
	// beat.
	Ready func() bool
	// Interval between beats (0: Interval).
	Interval time.Duration
	Log      *slog.Logger

	failing bool // the last beat failed (Run's goroutine only)
}

func (h *Heartbeater) row(ready bool, stopping time.Time) store.Instance {
	return store.Instance{
		ID: h.Self.ID, Name: h.Self.Name, Host: h.Self.Host, Version: h.Self.Version, Listen: h.Listen,
		Ready: ready, Started: h.Self.Started, Stopping: stopping,
	}
}

// Beat writes the row once, as Ready says.
func (h *Heartbeater) Beat(ctx context.Context) error {
	return h.Store.Heartbeat(ctx, h.row(h.Ready == nil || h.Ready(), time.Time{}))
}

// Run beats every Interval until ctx ends. A failed beat is logged once
// until one succeeds again.
func (h *Heartbeater) Run(ctx context.Context) {
	every := h.Interval
	if every <= 0 {
		every = Interval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := h.Beat(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !h.failing:
			h.failing = true
			h.logger().Warn("heartbeat failed; other instances will see this one as not ready", "err", err)
		case err == nil && h.failing:
			h.failing = false
			h.logger().Info("heartbeat recorded again")
		}
	}
}

// Stopping records that the instance's graceful shutdown began: it is no
// longer ready. Call it after Run has returned, so that no beat of Run's
// overwrites it.
func (h *Heartbeater) Stopping(ctx context.Context) error {
	return h.Store.Heartbeat(ctx, h.row(false, time.Now()))
}

// Remove deletes the row: the instance has stopped.
func (h *Heartbeater) Remove(ctx context.Context) error {
	return h.Store.RemoveInstance(ctx, h.Self.ID)
}

func (h *Heartbeater) logger() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}
