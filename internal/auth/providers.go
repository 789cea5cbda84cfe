package auth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/errdefs"
)

// LocalUsers is the identity provider of users Berth keeps itself (the
// bootstrap administrator): bcrypt hashes in the metadata store.
type LocalUsers struct {
	// PasswordHash returns the user's bcrypt hash, "" or
	// errdefs.ErrNotFound when Berth holds none.
	PasswordHash func(ctx context.Context, user string) (string, error)
}

// CheckPassword implements IdentityProvider.
func (l LocalUsers) CheckPassword(ctx context.Context, user, password string) (bool, error) {
	hash, err := l.PasswordHash(ctx, user)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && hash == "") {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil, nil
}

// KnowsUser implements UserDirectory: a user Berth holds, with a password
// or without (one an identity provider vouched for, recorded at login).
func (l LocalUsers) KnowsUser(ctx context.Context, user string) bool {
	_, err := l.PasswordHash(ctx, user)
	return err == nil
}

// HashPassword returns the bcrypt hash of password for LocalUsers.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// Chain asks each provider in turn; the first to accept the password wins.
type Chain []IdentityProvider

// CheckPassword implements IdentityProvider.
func (c Chain) CheckPassword(ctx context.Context, user, password string) (bool, error) {
	var errs []error
	for _, p := range c {
		ok, err := p.CheckPassword(ctx, user, password)
		if ok {
			return true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, errors.Join(errs...)
}

// KnowsUser implements UserDirectory: whether any provider that can tell
// knows the user.
func (c Chain) KnowsUser(ctx context.Context, user string) bool {
	for _, p := range c {
		if d, ok := p.(UserDirectory); ok && d.KnowsUser(ctx, user) {
			return true
		}
	}
	return false
}

// passwordCache remembers, briefly, that a user name and password were
// right. Clients resend Basic credentials on every request; without it
// each would cost a bcrypt (tens of milliseconds of CPU). Keys are hashes,
// so the cache never holds a password.
type passwordCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]verified
}

type verified struct {
	expires time.Time
	gen     int64 // the access generation when it was verified
}

func passwordKey(user, password string) [sha256.Size]byte {
	h := sha256.New()
	// The user name's length first: no two (user, password) pairs share
	// an input, whatever bytes they hold.
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(user))))
	h.Write([]byte(user))
	h.Write([]byte(password))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// hit reports whether the pair was verified within the TTL and with no
// access change since (a password set in the store moves the generation).
func (c *passwordCache) hit(k [sha256.Size]byte, gen int64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[k]
	if ok && (now.After(v.expires) || v.gen != gen) {
		delete(c.entries, k)
		return false
	}
	return ok
}

func (c *passwordCache) put(k [sha256.Size]byte, gen int64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[[sha256.Size]byte]verified{}
	}
	if len(c.entries) >= c.max {
		for key, v := range c.entries {
			if now.After(v.expires) {
				delete(c.entries, key)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = verified{now.Add(c.ttl), gen}
}
