package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/berth-registry/berth/internal/atomicfile"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/store"
)

// AdminUser is the cluster administrator created on first start.
const AdminUser = "admin"

// AdminPasswordFile, in the data directory, holds the generated password
// of AdminUser when BERTH_ADMIN_PASSWORD did not give one.
const AdminPasswordFile = "admin-password"

const settingBootstrapped = "bootstrapped"

// bootstrap runs once per metadata store: it creates the administrator and
// the default bindings (every user, service accounts aside, may create
// projects, as on the reference platform). It is redone after a crash in the middle,
// since the "bootstrapped" mark is written last.
func bootstrap(ctx context.Context, meta *store.Store, dataDir, password string, log *slog.Logger) error {
	if _, err := meta.Setting(ctx, settingBootstrapped); err == nil {
		return nil
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	given := password != ""
	passwordFile := filepath.Join(dataDir, AdminPasswordFile)
	if !given {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		password = base64.RawURLEncoding.EncodeToString(b)
		if err := atomicfile.Write(passwordFile, []byte(password+"\n"), privateFile, nil); err != nil {
			return fmt.Errorf("write the administrator's password: %w", err)
		}
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	err = meta.CreateUser(ctx, store.User{Name: AdminUser, PasswordHash: hash})
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		err = meta.SetUserPassword(ctx, AdminUser, hash)
	}
	if err != nil {
		return err
	}
	for _, b := range []struct{ role, kind, subject string }{
		{"cluster-admin", "User", AdminUser},
		{"self-provisioner", "Group", auth.GroupPeople},
	} {
		if err := meta.AddBinding(ctx, "", b.role, b.kind, b.subject); err != nil {
			return err
		}
	}
	if _, err := meta.InitSetting(ctx, settingBootstrapped, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return err
	}
	if given {
		log.Info("created the cluster administrator", "user", AdminUser, "password", "as configured (BERTH_ADMIN_PASSWORD)")
	} else {
		log.Info("created the cluster administrator", "user", AdminUser, "password_file", passwordFile)
	}
	return nil
}

// userNameHashKey is the key of the hash a failed login's user name is
// logged as when no identity provider knows it (see
// auth.Authenticator.NameHashKey): derived from the key Secrets are
// encrypted with, which every instance shares and which is kept outside
// the database, so that a copy of the database and the logs together do
// not let anyone test guesses of passwords typed as user names.
func userNameHashKey(secretKey []byte) []byte {
	mac := hmac.New(sha256.New, secretKey)
	mac.Write([]byte("berth: the key of user names in logs"))
	return mac.Sum(nil)
}

// timedAccess is the metadata store as authentication and authorization
// read it, with each call's time added to its request's debug line
// (reqlog). Reads served from their caches do not reach it.
type timedAccess struct{ meta *store.Store }

func (t timedAccess) LookupToken(ctx context.Context, hash []byte) (auth.TokenRecord, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.meta.LookupToken(ctx, hash)
}

func (t timedAccess) GroupsOf(ctx context.Context, user string) ([]string, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.meta.GroupsOf(ctx, user)
}

func (t timedAccess) Bindings(ctx context.Context, project string) ([]auth.Binding, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.meta.Bindings(ctx, project)
}

// ClusterRoles makes timedAccess an auth.RoleSource: the authorizer
// resolves bindings of stored ClusterRoles through it.
func (t timedAccess) ClusterRoles(ctx context.Context) (map[string]auth.Role, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.meta.ClusterRoles(ctx)
}

// identityProviders are the password checkers in force: Berth's own users
// first, then the htpasswd file when one is configured.
func identityProviders(meta *store.Store, htpasswd string) (auth.IdentityProvider, error) {
	chain := auth.Chain{auth.LocalUsers{PasswordHash: func(ctx context.Context, name string) (string, error) {
		defer reqlog.StartStore(ctx).Stop()
		u, err := meta.User(ctx, name)
		return u.PasswordHash, err
	}}}
	if htpasswd != "" {
		h, err := auth.OpenHtpasswd(htpasswd)
		if err != nil {
			return nil, err
		}
		chain = append(chain, h)
	}
	return chain, nil
}
