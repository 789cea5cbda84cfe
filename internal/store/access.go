package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
)

// Project is a namespace of repositories and role bindings.
type Project struct {
	Name    string
	Creator string
	Created time.Time
}

// CreateProject records a project and makes its creator (when not "") its
// admin; an existing project is errdefs.ErrAlreadyExists.
func (s *Store) CreateProject(ctx context.Context, p Project) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`INSERT INTO projects (name, creator, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			p.Name, p.Creator, s.micros())
		if err != nil {
			return fmt.Errorf("create project %s: %w", p.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("project %s: %w", p.Name, errdefs.ErrAlreadyExists)
		}
		// Nothing of an earlier project of that name is inherited, whatever
		// an older version, a crash or a push that ended after the project
		// was deleted may have left behind.
		if err := s.deleteNamespaceObjects(ctx, tx, p.Name); err != nil {
			return err
		}
		// Sessions left behind stay: they expire, and their bytes go with
		// them, as any other session's.
		if _, err := s.deleteRepositoriesOf(ctx, tx, p.Name, false); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM role_bindings WHERE project = ?`, p.Name); err != nil {
			return fmt.Errorf("create project %s: %w", p.Name, err)
		}
		// The creator administers the project from the same commit: there is
		// no moment when the project exists and nobody may manage it.
		if p.Creator != "" {
			o, err := newBindingObject(p.Name, "admin", "admin", []Subject{{Kind: "User", Name: p.Creator}}, s.now())
			if err == nil {
				_, err = s.createObject(ctx, tx, o)
			}
			if err != nil {
				return fmt.Errorf("make %s admin of %s: %w", p.Creator, p.Name, err)
			}
		}
		return s.appendEvent(ctx, tx, EventProjectCreated, p.Name, "", "")
	})
}

// ReclaimProject makes project a cluster administrator's only: it forgets
// its creator and deletes every role binding and service account in it. It
// returns what it took away ("binding: role to Kind name", "service
// account name"). Berth calls it for its
// system projects, which a user may have created before their names were
// reserved.
func (s *Store) ReclaimProject(ctx context.Context, project string) ([]string, error) {
	var taken []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		taken = nil
		if _, err := tx.ExecContext(ctx, `UPDATE projects SET creator = '' WHERE name = ?`, project); err != nil {
			return fmt.Errorf("reclaim project %s: %w", project, err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT name, role, subject_kind, subject FROM role_bindings WHERE project = ? ORDER BY name, subject`, project)
		if err != nil {
			return fmt.Errorf("reclaim project %s: %w", project, err)
		}
		for rows.Next() {
			var name, role, kind, subject string
			if err := rows.Scan(&name, &role, &kind, &subject); err != nil {
				rows.Close()
				return err
			}
			taken = append(taken, fmt.Sprintf("%s: %s to %s %s", name, role, kind, subject))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := s.dropSubjects(ctx, tx, `project = ?`, project); err != nil {
			return err
		}
		// Its service accounts go too, with their tokens and grants
		// anywhere: they were the old owner's robots.
		accounts, err := tx.QueryContext(ctx, `SELECT name FROM objects WHERE api_group = '' AND resource = 'serviceaccounts' AND namespace = ?`, project)
		if err != nil {
			return fmt.Errorf("reclaim project %s: %w", project, err)
		}
		names, err := scanStrings(accounts)
		if err != nil {
			return fmt.Errorf("reclaim project %s: %w", project, err)
		}
		for _, name := range names {
			if _, err := s.deleteObject(ctx, tx, ServiceAccountKey(project, name), 0, ""); err != nil {
				return err
			}
			taken = append(taken, "service account "+name)
		}
		return nil
	})
	return taken, err
}

const projectColumns = `name, creator, created_at`

// Project returns one project.
func (s *Store) Project(ctx context.Context, name string) (Project, error) {
	rows, err := s.query(ctx, `SELECT `+projectColumns+` FROM projects WHERE name = ?`, name)
	if err != nil {
		return Project{}, fmt.Errorf("read project %s: %w", name, err)
	}
	ps, err := scanProjects(rows)
	if err != nil {
		return Project{}, fmt.Errorf("read project %s: %w", name, err)
	}
	if len(ps) == 0 {
		return Project{}, fmt.Errorf("project %s: %w", name, errdefs.ErrNotFound)
	}
	return ps[0], nil
}

// Projects lists every project by name.
func (s *Store) Projects(ctx context.Context) ([]Project, error) {
	rows, err := s.query(ctx, `SELECT `+projectColumns+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return scanProjects(rows)
}

func scanProjects(rows *sql.Rows) ([]Project, error) {
	defer rows.Close()
	var out []Project
	for rows.Next() {
		var p Project
		var created int64
		if err := rows.Scan(&p.Name, &p.Creator, &created); err != nil {
			return nil, err
		}
		p.Created = time.UnixMicro(created).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteProject removes a project with everything in it; see
// DeleteProjectAndRepositories.
func (s *Store) DeleteProject(ctx context.Context, name string) error {
	_, err := s.DeleteProjectAndRepositories(ctx, name)
	return err
}

// Bindings implements auth.BindingSource: the bindings of project and the
// cluster-wide ones, one per role.
func (s *Store) Bindings(ctx context.Context, project string) ([]auth.Binding, error) {
	rows, err := s.query(ctx, `
SELECT project, name, role, subject_kind, subject, created_at FROM role_bindings
WHERE project = '' OR project = ? ORDER BY project, name`, project)
	if err != nil {
		return nil, fmt.Errorf("read bindings of %q: %w", project, err)
	}
	defer rows.Close()
	var out []auth.Binding
	for rows.Next() {
		var proj, name, role, kind, subject string
		var created int64
		if err := rows.Scan(&proj, &name, &role, &kind, &subject, &created); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Project != proj || out[len(out)-1].Name != name {
			out = append(out, auth.Binding{Project: proj, Name: name, Role: role, Created: time.UnixMicro(created).UTC()})
		}
		b := &out[len(out)-1]
		if c := time.UnixMicro(created).UTC(); c.Before(b.Created) {
			b.Created = c
		}
		if kind == "User" {
			b.Users = append(b.Users, subject)
		} else {
			b.Groups = append(b.Groups, subject)
		}
	}
	return out, rows.Err()
}

// GroupsOf returns the groups user belongs to.
func (s *Store) GroupsOf(ctx context.Context, user string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT group_name FROM group_members WHERE user_name = ? ORDER BY group_name`, user)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", user, err)
	}
	return scanStrings(rows)
}

// Token is a stored token: never the secret, only its hash.
type Token struct {
	ID          string
	SecretHash  []byte
	User        string
	Description string
	Created     time.Time
	Expires     time.Time
	// Revoked is zero while the token is valid.
	Revoked time.Time
}

// CreateToken stores a token.
func (s *Store) CreateToken(ctx context.Context, t Token) error {
	if _, _, ok := auth.ServiceAccountOf(t.User); ok {
		// A service account's token is written only while the account
		// exists, checked by the insert itself: a token requested as the
		// account (or its project) is deleted must not outlive it.
		return s.tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `
INSERT INTO tokens (id, secret_hash, user_name, description, created_at, expires_at)
SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE name = ?)`,
				t.ID, t.SecretHash, t.User, t.Description, s.micros(), t.Expires.UnixMicro(), t.User)
			if err != nil {
				return fmt.Errorf("create token for %s: %w", t.User, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("create token for %s: the service account is gone: %w", t.User, errdefs.ErrNotFound)
			}
			return s.insertAudit(ctx, tx, tokenAudit(ctx, t, s.micros()))
		})
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO tokens (id, secret_hash, user_name, description, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.SecretHash, t.User, t.Description, s.micros(), t.Expires.UnixMicro()); err != nil {
			return fmt.Errorf("create token for %s: %w", t.User, err)
		}
		return s.insertAudit(ctx, tx, tokenAudit(ctx, t, s.micros()))
	})
}

// tokenAudit is the audit row of token t's creation: its description
// (how it was asked for) and when it expires; never its secret.
func tokenAudit(ctx context.Context, t Token, at int64) AuditEntry {
	detail := "expires " + t.Expires.UTC().Format(time.RFC3339)
	if t.Description != "" {
		detail = t.Description + ", " + detail
	}
	if ActorFrom(ctx) == "" {
		// Asked for with no one signed in: a login, by the user itself.
		ctx = WithActor(ctx, t.User)
	}
	return auditToken(ctx, AuditCreate, t.User, detail, at)
}

// TokenByHash returns the token whose secret hashes to hash, revoked or
// expired ones included (the caller decides).
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (Token, error) {
	rows, err := s.query(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE secret_hash = ?`, hash)
	if err != nil {
		return Token{}, fmt.Errorf("look up token: %w", err)
	}
	tokens, err := scanTokens(rows)
	if err != nil {
		return Token{}, err
	}
	if len(tokens) == 0 {
		return Token{}, fmt.Errorf("token: %w", errdefs.ErrNotFound)
	}
	return tokens[0], nil
}

// TokensOf lists a user's tokens, newest first.
func (s *Store) TokensOf(ctx context.Context, user string) ([]Token, error) {
	rows, err := s.query(ctx,
		`SELECT `+tokenColumns+` FROM tokens WHERE user_name = ? ORDER BY created_at DESC, id`, user)
	if err != nil {
		return nil, fmt.Errorf("list tokens of %s: %w", user, err)
	}
	return scanTokens(rows)
}

const tokenColumns = `id, secret_hash, user_name, description, created_at, expires_at, revoked_at`

func scanTokens(rows *sql.Rows) ([]Token, error) {
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var created, expires int64
		var revoked sql.NullInt64
		if err := rows.Scan(&t.ID, &t.SecretHash, &t.User, &t.Description, &created, &expires, &revoked); err != nil {
			return nil, err
		}
		t.Created, t.Expires = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC()
		if revoked.Valid {
			t.Revoked = time.UnixMicro(revoked.Int64).UTC()
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks token id revoked; an unknown or already revoked token
// is errdefs.ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, s.micros(), id)
		if err != nil {
			return fmt.Errorf("revoke token %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("token %s: %w", id, errdefs.ErrNotFound)
		}
		s.touchAccess(tx)
		var user string
		if err := tx.QueryRowContext(ctx, `SELECT user_name FROM tokens WHERE id = ?`, id).Scan(&user); err != nil {
			return fmt.Errorf("revoke token %s: %w", id, err)
		}
		return s.insertAudit(ctx, tx, auditToken(ctx, AuditDelete, user, "revoked", s.micros()))
	})
}

// LookupToken implements auth.TokenSource.
func (s *Store) LookupToken(ctx context.Context, hash []byte) (auth.TokenRecord, error) {
	t, err := s.TokenByHash(ctx, hash)
	if err != nil {
		return auth.TokenRecord{}, err
	}
	return auth.TokenRecord{ID: t.ID, Hash: t.SecretHash, User: t.User, Expires: t.Expires, Revoked: t.Revoked}, nil
}

// SaveToken implements auth.TokenWriter.
func (s *Store) SaveToken(ctx context.Context, rec auth.TokenRecord, description string) error {
	return s.CreateToken(ctx, Token{ID: rec.ID, SecretHash: rec.Hash, User: rec.User, Description: description, Expires: rec.Expires})
}

// ProjectsBoundTo lists the projects where a binding names user or one of
// groups.
func (s *Store) ProjectsBoundTo(ctx context.Context, user string, groups []string) ([]string, error) {
	q := `SELECT DISTINCT project FROM role_bindings WHERE project <> '' AND ((subject_kind = 'User' AND subject = ?)`
	args := []any{user}
	if len(groups) > 0 {
		q += ` OR (subject_kind = 'Group' AND subject IN (` + placeholders(len(groups)) + `))`
		for _, g := range groups {
			args = append(args, g)
		}
	}
	// Unprepared: a text per count of groups would fill the statement cache.
	rows, err := s.read.QueryContext(ctx, q+`) ORDER BY project`, args...)
	if err != nil {
		return nil, fmt.Errorf("projects bound to %s: %w", user, err)
	}
	return scanStrings(rows)
}

// RepositoriesIn pages through the repositories of projects by name.
func (s *Store) RepositoriesIn(ctx context.Context, projects []string, last string, n int) ([]string, bool, error) {
	if len(projects) == 0 {
		return nil, false, nil
	}
	args := []any{last}
	for _, p := range projects {
		args = append(args, p)
	}
	args = append(args, n+1)
	// Unprepared: a text per count of projects would fill the statement
	// cache.
	rows, err := s.read.QueryContext(ctx, `SELECT name FROM repositories WHERE name > ? AND project IN (`+
		placeholders(len(projects))+`) ORDER BY name LIMIT ?`, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list repositories: %w", err)
	}
	return page(rows, n)
}

// RepositoriesWithBlob lists up to n repositories holding dgst.
func (s *Store) RepositoriesWithBlob(ctx context.Context, dgst digest.Digest, n int) ([]string, error) {
	rows, err := s.query(ctx, `
SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
WHERE rb.digest = ? ORDER BY r.name LIMIT ?`, string(dgst), n)
	if err != nil {
		return nil, fmt.Errorf("repositories with %s: %w", dgst, err)
	}
	return scanStrings(rows)
}

// RepositoryExists reports whether repo has been created.
func (s *Store) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	_, err := s.repositoryID(ctx, s.read, repo)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
