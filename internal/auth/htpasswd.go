package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd is the identity provider of an htpasswd file with bcrypt
// hashes (htpasswd -B), as the reference's HTPasswd provider. The file is
// read again when it changes.
type Htpasswd struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	hashes  map[string][]byte
}

// OpenHtpasswd reads path; a line that is not "user:bcrypt-hash" is an
// error naming the line.
func OpenHtpasswd(path string) (*Htpasswd, error) {
	h := &Htpasswd{path: path}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// dummyHash keeps the time of a check for an unknown user close to that
// of a known one, so timing does not tell which users exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("berth-unknown-user"), bcrypt.DefaultCost)

// CheckPassword implements IdentityProvider.
func (h *Htpasswd) CheckPassword(_ context.Context, user, password string) (bool, error) {
	if err := h.reload(); err != nil {
		return false, err
	}
	h.mu.Lock()
	hash, ok := h.hashes[user]
	h.mu.Unlock()
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false, nil
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, nil
}

// KnowsUser implements UserDirectory.
func (h *Htpasswd) KnowsUser(_ context.Context, user string) bool {
	_ = h.reload() // a file that cannot be read leaves the last good contents
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.hashes[user]
	return ok
}

// reload re-reads the file when its size or modification time changed.
// A file that turns bad while serving leaves the last good contents in
// force: a typo must not lock every user out.
func (h *Htpasswd) reload() error {
	err := h.read()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil && h.hashes != nil {
		return nil
	}
	return err
}

func (h *Htpasswd) read() error {
	st, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hashes != nil && st.ModTime().Equal(h.modTime) && st.Size() == h.size {
		return nil
	}
	b, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	hashes := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		user, hash, entry, err := ParseHtpasswdLine(sc.Text())
		if err != nil {
			return fmt.Errorf("htpasswd %s line %d: %w", h.path, n, err)
		}
		if !entry {
			continue
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("htpasswd %s line %d (%s): only bcrypt hashes are accepted (htpasswd -B): %v", h.path, n, user, err)
		}
		hashes[user] = []byte(hash)
	}
	h.hashes, h.modTime, h.size = hashes, st.ModTime(), st.Size()
	return nil
}

// ParseHtpasswdLine splits one line of an htpasswd file (without its line
// break) into the user and the hash. entry is false for a blank line or a
// comment; a line that is neither nor user:hash is an error. The hash is
// not checked.
func ParseHtpasswdLine(line string) (user, hash string, entry bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", "", false, nil
	}
	user, hash, ok := strings.Cut(line, ":")
	if !ok || user == "" {
		return "", "", false, errors.New("not user:hash")
	}
	return user, hash, true, nil
}

// CheckHtpasswdUser says why name cannot be a user of an htpasswd file:
// the file would not read back as an entry of that name.
func CheckHtpasswdUser(name string) error {
	switch {
	case name == "":
		return errors.New("a user name cannot be empty")
	case strings.Contains(name, ":"):
		return fmt.Errorf("user name %q: a name cannot hold ':', which ends it in an htpasswd line", name)
	case strings.ContainsAny(name, "\r\n"):
		return fmt.Errorf("user name %q: a name cannot hold a line break", name)
	}
	if user, _, entry, err := ParseHtpasswdLine(name + ":"); err != nil || !entry || user != name {
		return fmt.Errorf("user name %q: a name cannot start with '#' or white space (the line would read as a comment, or as another name)", name)
	}
	return nil
}
