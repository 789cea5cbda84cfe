package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/prune"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/storetest"
)

// The ImagePruner as the reference's operator makes it, run on its
// schedule: a due time prunes once with the spec's policy and records the
// run; suspended, or not yet due, nothing runs; the history limits bound
// the runs kept; an invalid spec is Degraded.
func TestImagePrunerRunsItsSchedule(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := time.Date(2026, 12, 6, 10, 2, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	c := &operator.ImagePrunerController{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now,
		Pruner: &prune.Pruner{Store: st, Now: func() time.Time { return time.Now().Add(time.Hour) }}}
	read := func() *imageregistryv1.ImagePruner {
		t.Helper()
		_, p := storedPruner(t, st)
		return p
	}
	write := func(edit func(*imageregistryv1.ImagePrunerSpec)) {
		t.Helper()
		editPruner(t, st, func(p *imageregistryv1.ImagePruner) {
			edit(&p.Spec)
			p.Generation++
		})
	}
	condition := func(p *imageregistryv1.ImagePruner, typ string) string {
		for _, c := range p.Status.Conditions {
			if c.Type == typ {
				return c.Status + "/" + c.Reason
			}
		}
		return "missing"
	}

	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	p := read()
	if p.Spec.Suspend == nil || *p.Spec.Suspend || *p.Spec.KeepTagRevisions != 3 || !p.Spec.IgnoreInvalidImageReferences ||
		*p.Spec.SuccessfulJobsHistoryLimit != 3 || *p.Spec.FailedJobsHistoryLimit != 3 {
		t.Fatalf("bootstrapped spec = %+v", p.Spec)
	}
	for typ, want := range map[string]string{"Available": "True/AsExpected", "Scheduled": "True/Scheduled", "Failed": "False/Complete", "Degraded": "False/AsExpected"} {
		if got := condition(p, typ); got != want {
			t.Errorf("condition %s = %s, want %s", typ, got, want)
		}
	}

	in := store.Only(store.DefaultStorage)
	for i := range 3 {
		m := storetest.Image(t, st, "p/app", fmt.Sprint("rev", i))
		if err := st.PutManifest(ctx, in, "p/app", m, []string{"latest"}); err != nil {
			t.Fatal(err)
		}
	}
	one, every5 := 1, "*/5 * * * *"
	succeeded := int32(1)
	write(func(s *imageregistryv1.ImagePrunerSpec) {
		s.Schedule, s.KeepTagRevisions, s.SuccessfulJobsHistoryLimit = every5, &one, &succeeded
		s.KeepYoungerThanDuration = &metav1.Duration{Duration: 0}
	})
	// 10:02, created 10:02: next is 10:05, not yet.
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if p := read(); len(p.Status.Runs) != 0 {
		t.Fatalf("ran before its time: %+v", p.Status.Runs)
	}
	clock = clock.Add(4 * time.Minute) // 10:06
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	p = read()
	if len(p.Status.Runs) != 1 || !p.Status.Runs[0].Succeeded || p.Status.Runs[0].Revisions != 2 || p.Status.Runs[0].Images != 2 ||
		!p.Status.Runs[0].Scheduled.Time.Equal(time.Date(2026, 12, 6, 10, 5, 0, 0, time.UTC)) {
		t.Fatalf("runs after 10:05 = %+v", p.Status.Runs)
	}
	if h, _ := st.TagHistory(ctx, "p/app", "latest"); len(h) != 1 {
		t.Fatalf("history after the scheduled pruning has %d entries, want 1", len(h))
	}
	if p.Status.ObservedGeneration != p.Generation {
		t.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
	}
	// Again at the same time: nothing more.
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if p := read(); len(p.Status.Runs) != 1 {
		t.Fatalf("ran twice for one time: %+v", p.Status.Runs)
	}
	// The next time: one run kept (successfulJobsHistoryLimit 1).
	clock = clock.Add(5 * time.Minute) // 10:11
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if p := read(); len(p.Status.Runs) != 1 || !p.Status.Runs[0].Scheduled.Time.Equal(time.Date(2026, 12, 6, 10, 10, 0, 0, time.UTC)) {
		t.Fatalf("runs after 10:10 = %+v", p.Status.Runs)
	}

	yes := true
	write(func(s *imageregistryv1.ImagePrunerSpec) { s.Suspend = &yes })
	clock = clock.Add(10 * time.Minute)
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	p = read()
	if len(p.Status.Runs) != 1 || condition(p, "Scheduled") != "False/Suspended" {
		t.Fatalf("suspended: runs %+v, Scheduled %s", p.Status.Runs, condition(p, "Scheduled"))
	}

	// Stored around the API's validation: refused in status, not run.
	write(func(s *imageregistryv1.ImagePrunerSpec) {
		s.Suspend = nil
		s.NodeSelector = map[string]string{"disk": "ssd"}
		s.Resources = &corev1.ResourceRequirements{}
	})
	clock = clock.Add(10 * time.Minute)
	if err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	p = read()
	if len(p.Status.Runs) != 1 || condition(p, "Degraded") != "True/SyncError" || condition(p, "Available") != "False/Error" {
		t.Fatalf("invalid: runs %+v, conditions %+v", p.Status.Runs, p.Status.Conditions)
	}
}

// storedPruner reads the stored ImagePruner.
func storedPruner(t *testing.T, st *store.Store) (store.Object, *imageregistryv1.ImagePruner) {
	t.Helper()
	rec, err := st.GetObject(context.Background(), operator.ImagePrunerKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &imageregistryv1.ImagePruner{}
	if err := json.Unmarshal(rec.Body, p); err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion = fmt.Sprint(rec.ResourceVersion)
	return rec, p
}

// editPruner changes the stored ImagePruner around the API (and its
// validation).
func editPruner(t *testing.T, st *store.Store, edit func(*imageregistryv1.ImagePruner)) {
	t.Helper()
	rec, p := storedPruner(t, st)
	edit(p)
	p.ResourceVersion = ""
	rec.Body, _ = json.Marshal(p)
	if _, err := st.UpdateObject(context.Background(), rec, rec.ResourceVersion); err != nil {
		t.Fatal(err)
	}
}
