package apiserver_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storagemigration"
)

// countingMigrator stands for the server's migrator where what is tested
// is who may start one and what the stream says: it counts its runs and
// reports two blobs moved (the migration itself is tested with real
// storages in internal/storagemigration and internal/server).
type countingMigrator struct {
	runs atomic.Int32
	fail error
}

func (m *countingMigrator) MigrateStorage(_ context.Context, dryRun bool, progress func(storagemigration.Progress)) (storagemigration.Report, error) {
	m.runs.Add(1)
	if m.fail != nil {
		return storagemigration.Report{}, m.fail
	}
	progress(storagemigration.Progress{Storage: "old", Blobs: 1, TotalBlobs: 2})
	progress(storagemigration.Progress{Storage: "old", Blobs: 2, TotalBlobs: 2})
	return storagemigration.Report{DryRun: dryRun, Storages: []storagemigration.StorageReport{{Name: "old", Blobs: 2, Copied: 2}}}, nil
}

func TestStorageMigrationEndpoint(t *testing.T) {
	m := &countingMigrator{}
	s := apiservertest.New(t, apiservertest.Options{Users: map[string]string{"bob": "bob-pw"}, StorageMigrator: m})
	const path = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster/storagemigration"
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	anon := client{t: t, base: s.URL}

	anon.expect(401, "POST", path, nil)
	bob.expect(403, "POST", path, nil)
	admin.expect(404, "POST", strings.Replace(path, "/cluster/", "/other/", 1), nil)
	admin.expect(400, "POST", path+"?dryRun=Some", nil)
	if n := m.runs.Load(); n != 0 {
		t.Fatalf("%d migrations ran for refused requests", n)
	}

	a := admin.do("POST", path+"?dryRun=All", nil)
	lines := strings.Split(strings.TrimSpace(string(a.raw)), "\n")
	if a.code != 200 || len(lines) < 2 || !strings.Contains(lines[len(lines)-1], `"type":"Done"`) || !strings.Contains(lines[len(lines)-1], `"dryRun":true`) {
		t.Fatalf("dry run: %d\n%s", a.code, a.raw)
	}
	if !strings.Contains(lines[len(lines)-2], `"blobs":2,"bytes":0,"totalBlobs":2`) {
		t.Errorf("the last progress line before the report is not the last progress: %s", lines[len(lines)-2])
	}

	// One already running is a conflict, before anything is streamed.
	m.fail = errors.Join(errors.New("a storage migration is already running"), errdefs.ErrConflict)
	if a := admin.expect(409, "POST", path, nil); !strings.Contains(a.str("message"), "already running") {
		t.Errorf("conflict: %s", a.raw)
	}

	// Discovery names the subresource.
	d := admin.expect(200, "GET", "/apis/imageregistry.operator.openshift.io/v1", nil)
	if !strings.Contains(string(d.raw), `"name":"configs/storagemigration"`) {
		t.Errorf("discovery: %s", d.raw)
	}
}
