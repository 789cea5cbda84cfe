package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
)

// databaseAt makes a database of the schema of migration n, as an older
// berth left it, and returns its path and a connection to it.
func databaseAt(t *testing.T, n int) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(context.Background(), db, sqliteMigrations[:n]); err != nil {
		t.Fatal(err)
	}
	return path, db
}

// Migration 5 gives role bindings names, and the first start makes each
// (and each group and service account) an object: the grants of a database written before survive, each binding
// named after its role.
func TestMigrationNamesExistingBindings(t *testing.T) {
	ctx := context.Background()
	path, old := databaseAt(t, 4)
	if _, err := old.ExecContext(ctx, `INSERT INTO projects (name, creator, created_at) VALUES ('team', 'bob', 1)`); err != nil {
		t.Fatal(err)
	}
	for _, row := range [][]any{
		{"team", "admin", "User", "bob"}, {"team", "registry-viewer", "User", "alice"},
		{"team", "registry-viewer", "Group", "qa"}, {"", "cluster-admin", "User", "admin"},
		{"gone", "admin", "User", "mallory"}, // a project deleted by an older version, its grant left behind
	} {
		if _, err := old.ExecContext(ctx, `INSERT INTO role_bindings (project, role, subject_kind, subject, created_at) VALUES (?, ?, ?, ?, 1)`, row...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.ExecContext(ctx, `INSERT INTO group_members (group_name, user_name) VALUES ('qa', 'alice'), ('qa', 'bob')`); err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `INSERT INTO users (name, created_at) VALUES ('system:serviceaccount:team:ci', 1), ('system:serviceaccount:gone:ci', 1)`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("migrate to the current schema: %v", err)
	}
	defer s.Close()
	b, err := s.Bindings(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range b {
		if x.Name != x.Role {
			t.Errorf("binding %q grants %q", x.Name, x.Role)
		}
		got[x.Project+"/"+x.Name] = x.Role + " " + slices.Concat(x.Users, x.Groups)[0]
	}
	want := map[string]string{"team/admin": "admin bob", "team/registry-viewer": "registry-viewer alice", "/cluster-admin": "cluster-admin admin"}
	if len(got) != len(want) {
		t.Fatalf("bindings after the migration: %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("binding %s = %q, want %q", k, got[k], v)
		}
	}
	// Each old binding became an object too, as the API serves it.
	o, err := s.GetObject(ctx, BindingKey("team", "registry-viewer"))
	if err != nil || !strings.Contains(string(o.Body), `"name":"alice"`) || !strings.Contains(string(o.Body), `"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"qa"`) {
		t.Errorf("the object of team/registry-viewer: %v %s", err, o.Body)
	}
	if _, err := s.GetObject(ctx, ServiceAccountKey("team", "ci")); err != nil {
		t.Errorf("the legacy service account team/ci: %v", err)
	}
	if _, err := s.User(ctx, "system:serviceaccount:gone:ci"); err == nil {
		t.Error("the service account of a missing project survived")
	}
	if m, err := s.GroupMembers(ctx, "qa"); err != nil || !slices.Equal(m, []string{"alice", "bob"}) {
		t.Errorf("the legacy group qa: %v %v", m, err)
	}
	if _, err := s.GetObject(ctx, BindingKey("", "cluster-admin")); err != nil {
		t.Errorf("the object of the cluster-wide binding: %v", err)
	}
	if gone, _ := s.Bindings(ctx, "gone"); len(gone) != 1 || gone[0].Project != "" {
		t.Errorf("the grant in the missing project survived: %+v", gone)
	}
	i := slices.IndexFunc(b, func(x auth.Binding) bool { return x.Name == "registry-viewer" })
	if i < 0 || !slices.Equal(b[i].Groups, []string{"qa"}) {
		t.Errorf("registry-viewer's groups lost: %+v", b)
	}
}

// Migration 13 numbers events from a row of their own: the numbers go on
// after the last one handed out, even when the events holding it were
// pruned (a watch must never see a number twice).
func TestMigrationContinuesTheEventNumbers(t *testing.T) {
	ctx := context.Background()
	path, old := databaseAt(t, 12)
	for range 5 {
		if _, err := old.ExecContext(ctx, `INSERT INTO events (kind, created_at) VALUES ('ProjectCreated', 1)`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.ExecContext(ctx, `DELETE FROM events WHERE seq > 2`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("migrate to the current schema: %v", err)
	}
	defer s.Close()
	if err := s.CreateProject(ctx, Project{Name: "after"}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[0].Seq != 6 {
		t.Fatalf("events after the migration: %+v, want the first numbered 6", evs)
	}
}

// Migration 15 counts what each project held before it: the sums are
// those of the distinct blobs and manifests its repositories linked.
func TestMigrationCountsWhatProjectsHold(t *testing.T) {
	ctx := context.Background()
	path, old := databaseAt(t, 14)
	for _, q := range []string{
		`INSERT INTO repositories (id, name, project, created_at) VALUES (1, 'p/a', 'p', 1), (2, 'p/b', 'p', 1), (3, 'q/a', 'q', 1)`,
		`INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:1', 100, 1), ('sha256:2', 20, 1)`,
		`INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (1, 'sha256:1', 1), (2, 'sha256:1', 1), (2, 'sha256:2', 1), (3, 'sha256:1', 1)`,
		`INSERT INTO manifests (digest, media_type, size, payload, created_at) VALUES ('sha256:m', 'x', 7, x'00', 1)`,
		`INSERT INTO repository_manifests (repository_id, digest, created_at) VALUES (1, 'sha256:m', 1), (2, 'sha256:m', 1)`,
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	old.Close()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("migrate to the current schema: %v", err)
	}
	defer s.Close()
	for project, want := range map[string]int64{"p": 127, "q": 100} {
		if u, err := s.ProjectUsage(ctx, project); err != nil || u.StorageBytes != want {
			t.Errorf("%s after the migration: %+v %v, want %d bytes", project, u, err, want)
		}
	}
	// Unlinking after the migration counts down from there.
	if err := s.UnlinkBlob(ctx, "p/b", "sha256:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.UnlinkBlob(ctx, "p/a", "sha256:1"); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.ProjectUsage(ctx, "p"); u.StorageBytes != 27 {
		t.Errorf("p after unlinking its 100 bytes: %+v", u)
	}
}

// Migration 17 records the image size of the manifests stored before it:
// an image's own bytes and its blobs', an index's children whole.
func TestMigrationRecordsImageSizes(t *testing.T) {
	ctx := context.Background()
	path, old := databaseAt(t, 16)
	for _, q := range []string{
		`INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:cfg', 10, 1), ('sha256:layer', 100, 1)`,
		`INSERT INTO manifests (digest, media_type, size, payload, created_at) VALUES ('sha256:img', 'x', 7, x'00', 1), ('sha256:idx', 'y', 3, x'00', 1)`,
		// A reference from before sizes were recorded (-1) counts the blob's.
		`INSERT INTO manifest_references (manifest_digest, reference, is_manifest, size) VALUES
			('sha256:img', 'sha256:cfg', 0, 10), ('sha256:img', 'sha256:layer', 0, -1), ('sha256:idx', 'sha256:img', 1, 7)`,
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	old.Close()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("migrate to the current schema: %v", err)
	}
	defer s.Close()
	for dgst, want := range map[string]int64{"sha256:img": 117, "sha256:idx": 120} {
		var got int64
		if err := s.read.QueryRowContext(ctx, `SELECT image_size FROM manifests WHERE digest = ?`, dgst).Scan(&got); err != nil || got != want {
			t.Errorf("image size of %s after the migration: %d %v, want %d", dgst, got, err, want)
		}
	}
}
