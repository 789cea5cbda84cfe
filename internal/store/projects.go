package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/berth-registry/berth/internal/errdefs"
)

// DeleteProjectAndRepositories removes a project with everything that
// hangs off it, in one transaction: its role bindings; its repositories
// with their tags (heads and history), manifest links and blob links; the
// manifest rows no repository links any more; and its service accounts
// (users named system:serviceaccount:<project>:*) with their tokens,
// group memberships and bindings anywhere — so a project created later
// under the same name inherits nothing. It returns the repositories that
// went. An unknown project is errdefs.ErrNotFound.
//
// Blob rows and blob bytes stay for the garbage collector. Upload sessions
// of the project's repositories end; the caller discards their bytes.
func (s *Store) DeleteProjectAndRepositories(ctx context.Context, name string) (ProjectDeletion, error) {
	var gone ProjectDeletion
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM projects WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete project %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("project %s: %w", name, errdefs.ErrNotFound)
		}
		if gone, err = s.deleteRepositoriesOf(ctx, tx, name, true); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM role_bindings WHERE project = ?`, name); err != nil {
			return fmt.Errorf("delete project %s: %w", name, err)
		}
		if err := s.deleteServiceAccounts(ctx, tx, name); err != nil {
			return err
		}
		if err := s.deleteNamespaceObjects(ctx, tx, name); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, EventProjectDeleted, name, "", "")
	})
	if err != nil {
		return ProjectDeletion{}, err
	}
	return gone, nil
}

// ProjectDeletion is what went with a project.
type ProjectDeletion struct {
	// Repositories are the project's repositories.
	Repositories []string
	// Uploads are the upload sessions that ended: their bytes in their
	// storage are the caller's to discard.
	Uploads []EndedUpload
}

// deleteRepositoriesOf removes the repositories of project with their
// tags, history and links, the manifests no other repository links, and,
// when endUploads, their upload sessions.
func (s *Store) deleteRepositoriesOf(ctx context.Context, tx *sql.Tx, project string, endUploads bool) (ProjectDeletion, error) {
	uploads := ""
	if endUploads {
		uploads = `project = ?`
	}
	return s.deleteRepositoriesWhere(ctx, tx, `project = ?`, project, uploads)
}

// DeleteRepository removes one repository (an image stream) with its
// tags, history and links, the manifests no other repository links, and
// its upload sessions, whose bytes the caller discards. Blob rows and
// bytes stay for the garbage collector. An unknown repository is
// errdefs.ErrNotFound.
func (s *Store) DeleteRepository(ctx context.Context, name string) (ProjectDeletion, error) {
	var gone ProjectDeletion
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		gone, err = s.deleteRepositoriesWhere(ctx, tx, `name = ?`, name, `repository = ?`)
		if err == nil && len(gone.Repositories) == 0 {
			err = fmt.Errorf("repository %s: %w", name, errdefs.ErrNotFound)
		}
		return err
	})
	return gone, err
}

// deleteRepositoriesWhere removes the repositories where (a condition on
// the repositories table with the one argument arg) selects, and the
// upload sessions uploads (a condition on the uploads table with the same
// argument, "" for none) selects: a project's sessions may be for a
// repository its first push has not created yet.
func (s *Store) deleteRepositoriesWhere(ctx context.Context, tx *sql.Tx, where string, arg any, uploads string) (ProjectDeletion, error) {
	var gone ProjectDeletion
	rows, err := tx.QueryContext(ctx, `SELECT name FROM repositories WHERE `+where+` ORDER BY name`, arg)
	if err != nil {
		return gone, fmt.Errorf("list repositories where %s %v: %w", where, arg, err)
	}
	if gone.Repositories, err = scanStrings(rows); err != nil {
		return gone, fmt.Errorf("list repositories where %s %v: %w", where, arg, err)
	}
	if uploads != "" {
		rows, err = tx.QueryContext(ctx, `DELETE FROM uploads WHERE `+uploads+` RETURNING id, storage, driver_state`, arg)
		if err != nil {
			return gone, fmt.Errorf("delete upload sessions where %s %v: %w", uploads, arg, err)
		}
		if gone.Uploads, err = scanEndedUploads(rows); err != nil {
			return gone, fmt.Errorf("delete upload sessions where %s %v: %w", uploads, arg, err)
		}
	}
	if len(gone.Repositories) == 0 {
		return gone, nil
	}
	selected := ` WHERE repository_id IN (SELECT id FROM repositories WHERE ` + where + `)`
	rows, err = tx.QueryContext(ctx, `SELECT DISTINCT digest FROM repository_manifests`+selected, arg)
	if err != nil {
		return gone, fmt.Errorf("list manifests where %s %v: %w", where, arg, err)
	}
	manifests, err := scanStrings(rows)
	if err != nil {
		return gone, fmt.Errorf("list manifests where %s %v: %w", where, arg, err)
	}
	for _, q := range []string{
		`DELETE FROM tag_heads` + selected,
		`DELETE FROM tag_events` + selected,
		`DELETE FROM repository_manifests` + selected,
		`DELETE FROM repository_blobs` + selected,
		`DELETE FROM repositories WHERE ` + where,
	} {
		if _, err := tx.ExecContext(ctx, q, arg); err != nil {
			return gone, fmt.Errorf("delete repositories where %s %v: %w", where, arg, err)
		}
	}
	// Manifests are shared content: a row goes only when no repository
	// links it any more (its references go with it by cascade).
	for _, d := range manifests {
		if _, err := tx.ExecContext(ctx, `
DELETE FROM manifests WHERE digest = ?
AND NOT EXISTS (SELECT 1 FROM repository_manifests WHERE digest = ?)`, d, d); err != nil {
			return gone, fmt.Errorf("delete manifest %s: %w", d, err)
		}
	}
	for _, r := range gone.Repositories {
		if err := s.appendEvent(ctx, tx, EventRepositoryDeleted, r, "", ""); err != nil {
			return gone, err
		}
	}
	return gone, nil
}

// deleteServiceAccounts removes the service accounts of project and
// everything that names them or their group, anywhere — whether or not an
// account was ever created: a binding elsewhere to
// system:serviceaccounts:<project> or to system:serviceaccount:<project>:x
// must not pass to whoever creates the project next.
func (s *Store) deleteServiceAccounts(ctx context.Context, tx *sql.Tx, project string) error {
	prefix := "system:serviceaccount:" + project + ":"
	const named = ` substr(%s, 1, ?) = ?`
	if err := s.dropMembers(ctx, tx, fmt.Sprintf(named, "user_name"), len(prefix), prefix); err != nil {
		return fmt.Errorf("delete service accounts of %s: %w", project, err)
	}
	for _, q := range []string{
		`DELETE FROM tokens WHERE` + fmt.Sprintf(named, "user_name"),
		`DELETE FROM users WHERE` + fmt.Sprintf(named, "name"),
	} {
		if _, err := tx.ExecContext(ctx, q, len(prefix), prefix); err != nil {
			return fmt.Errorf("delete service accounts of %s: %w", project, err)
		}
	}
	if _, err := s.dropSubjects(ctx, tx, `(subject_kind = 'User' AND`+fmt.Sprintf(named, "subject")+`) OR (subject_kind = 'Group' AND subject = ?)`,
		len(prefix), prefix, "system:serviceaccounts:"+project); err != nil {
		return fmt.Errorf("delete bindings of the service accounts of %s: %w", project, err)
	}
	return nil
}
