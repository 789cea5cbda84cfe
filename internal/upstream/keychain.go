package upstream

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"path"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
)

// ExcludeSecretAnnotation set to "true" keeps a secret out of the
// credentials used to reach other registries (the reference's
// openshift.io/image.excludeSecret).
const ExcludeSecretAnnotation = "openshift.io/image.excludeSecret"

// Keychain returns the credentials held by secrets of type
// kubernetes.io/dockerconfigjson (key .dockerconfigjson, entries under
// "auths") and kubernetes.io/dockercfg (key .dockercfg, entries at the top
// level); other secrets, and those annotated
// openshift.io/image.excludeSecret="true", are ignored.
//
// An entry's key is "host[:port][/path]", possibly with a scheme
// ("https://index.docker.io/v1/": a scheme's "/v1/" or "/v2/" path is the
// legacy API, not a repository). A host may be a glob per dot-separated
// label ("*.example.com"), as in the Kubernetes keyring. An entry covers
// a repository when the host (with Docker Hub's aliases docker.io,
// index.docker.io and registry-1.docker.io as one) and the port are the
// same and its path is a prefix of the repository at a "/" boundary.
//
// When several entries cover a repository, the choice does not depend on
// the order of secrets: an exact host beats a glob, then the longest path
// wins, then the secret that sorts first by namespace/name, then the
// entry key that sorts first. When none covers it, the access is
// anonymous (authn.Anonymous).
//
// Malformed content never fails the keychain: a secret whose data is not
// the JSON its type promises is skipped whole, and an entry whose "auth"
// is not base64 "user:password", or that carries no credential at all, is
// skipped alone; the other secrets and entries still count. A skipped
// entry does not hide a less specific one.
func Keychain(secrets []corev1.Secret) authn.Keychain {
	var entries []credEntry
	for i := range secrets {
		s := &secrets[i]
		if s.Annotations[ExcludeSecretAnnotation] == "true" {
			continue
		}
		var auths map[string]dockerAuth
		switch s.Type {
		case corev1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]dockerAuth `json:"auths"`
			}
			if json.Unmarshal(secretData(s, corev1.DockerConfigJsonKey), &cfg) != nil {
				continue
			}
			auths = cfg.Auths
		case corev1.SecretTypeDockercfg:
			if json.Unmarshal(secretData(s, corev1.DockerConfigKey), &auths) != nil {
				continue
			}
		default:
			continue
		}
		for key, a := range auths {
			e, ok := parseCredEntry(key, a)
			if !ok {
				continue
			}
			e.secret = s.Namespace + "/" + s.Name
			entries = append(entries, e)
		}
	}
	slices.SortStableFunc(entries, func(a, b credEntry) int {
		if a.glob != b.glob {
			if a.glob {
				return 1
			}
			return -1
		}
		return cmp.Or(
			cmp.Compare(len(b.path), len(a.path)),
			cmp.Compare(a.secret, b.secret),
			cmp.Compare(a.key, b.key),
		)
	})
	return &keychain{entries: entries}
}

// secretData reads key from Data, or from StringData for a secret built
// in memory that the API server has not normalised.
func secretData(s *corev1.Secret, key string) []byte {
	if b, ok := s.Data[key]; ok {
		return b
	}
	return []byte(s.StringData[key])
}

// dockerAuth is one entry of a docker config. encoding/json matches the
// names without regard to case, as Docker's own reader does.
type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

type credEntry struct {
	secret, key string // for the order of equally specific entries
	host, port  string // host lower case, Docker Hub as hubHost
	path        string // "" covers the whole registry
	glob        bool
	auth        authn.Authenticator
}

func parseCredEntry(key string, a dockerAuth) (credEntry, bool) {
	k := strings.TrimSpace(key)
	hadScheme := false
	for _, scheme := range []string{"https://", "http://"} {
		if len(k) >= len(scheme) && strings.EqualFold(k[:len(scheme)], scheme) {
			k, hadScheme = k[len(scheme):], true
			break
		}
	}
	reg, p, _ := strings.Cut(k, "/")
	p = strings.Trim(p, "/")
	host, port := splitHostPort(reg)
	if host == "" {
		return credEntry{}, false
	}
	if isHub(host) {
		host = hubHost
	}
	if (hadScheme || host == hubHost) && (p == "v1" || p == "v2") {
		p = ""
	}

	user, pass := a.Username, a.Password
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(strings.TrimSpace(a.Auth))
		}
		if err != nil {
			return credEntry{}, false
		}
		u, pw, ok := strings.Cut(string(raw), ":")
		if !ok {
			return credEntry{}, false
		}
		user, pass = u, pw
	}
	if user == "" && pass == "" && a.IdentityToken == "" && a.RegistryToken == "" {
		return credEntry{}, false
	}
	return credEntry{
		key:  key,
		host: host,
		port: port,
		path: p,
		glob: strings.ContainsAny(host, "*?["),
		auth: authn.FromConfig(authn.AuthConfig{
			Username:      user,
			Password:      pass,
			IdentityToken: a.IdentityToken,
			RegistryToken: a.RegistryToken,
		}),
	}, true
}

func (e *credEntry) covers(host, port, repo string) bool {
	if e.port != port {
		return false
	}
	if e.glob {
		if !globHost(e.host, host) {
			return false
		}
	} else if e.host != host {
		return false
	}
	return e.path == "" || repo == e.path || strings.HasPrefix(repo, e.path+"/")
}

// globHost matches label by label, so "*.example.com" covers
// "a.example.com" but not "a.b.example.com", as the Kubernetes keyring.
func globHost(pattern, host string) bool {
	pl, hl := strings.Split(pattern, "."), strings.Split(host, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

type keychain struct {
	entries []credEntry // most specific first
}

// Resolve implements authn.Keychain.
func (k *keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	reg := target.RegistryStr()
	host, port := splitHostPort(reg)
	if isHub(host) {
		host = hubHost
	}
	repo := strings.TrimPrefix(strings.TrimPrefix(target.String(), reg), "/")
	// A tag or digest reference names the same repository.
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	for i := range k.entries {
		if k.entries[i].covers(host, port, repo) {
			return k.entries[i].auth, nil
		}
	}
	return authn.Anonymous, nil
}
