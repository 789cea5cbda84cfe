package upstream

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// configJSONSecret is a kubernetes.io/dockerconfigjson secret.
func configJSONSecret(t *testing.T, secretName string, auths map[string]map[string]string) corev1.Secret {
	t.Helper()
	data, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	return corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "project", Name: secretName},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
}

// dockercfgSecret is a kubernetes.io/dockercfg secret: no "auths" level.
func dockercfgSecret(t *testing.T, secretName string, auths map[string]map[string]string) corev1.Secret {
	t.Helper()
	data, err := json.Marshal(auths)
	if err != nil {
		t.Fatal(err)
	}
	return corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "project", Name: secretName},
		Type:       corev1.SecretTypeDockercfg,
		Data:       map[string][]byte{corev1.DockerConfigKey: data},
	}
}

// credentials resolves ref and returns the user and password, or
// "anonymous".
func credentials(t *testing.T, kc authn.Keychain, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := kc.Resolve(r.Context())
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	if auth == authn.Anonymous {
		return "anonymous"
	}
	cfg, err := auth.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IdentityToken != "" {
		return "token:" + cfg.IdentityToken
	}
	return cfg.Username + ":" + cfg.Password
}

func TestKeychainDockerConfigJSON(t *testing.T) {
	kc := Keychain([]corev1.Secret{
		configJSONSecret(t, "auth-form", map[string]map[string]string{
			"reg.example.com": {"auth": b64("alice:s3cret:with:colons")},
		}),
		configJSONSecret(t, "user-form", map[string]map[string]string{
			"other.example.com:5000": {"username": "bob", "password": "hunter2"},
			"token.example.com":      {"identitytoken": "tok"},
		}),
	})
	cases := map[string]string{
		"reg.example.com/team/app:v1":              "alice:s3cret:with:colons",
		"other.example.com:5000/app@sha256:" + sha: "bob:hunter2",
		"token.example.com/app":                    "token:tok",
		"other.example.com/app":                    "anonymous", // the port differs
		"unknown.example.com/app":                  "anonymous",
	}
	for ref, want := range cases {
		if got := credentials(t, kc, ref); got != want {
			t.Errorf("%s: credentials %q, want %q", ref, got, want)
		}
	}
}

const sha = "0000000000000000000000000000000000000000000000000000000000000000"

func TestKeychainDockercfg(t *testing.T) {
	kc := Keychain([]corev1.Secret{
		dockercfgSecret(t, "legacy", map[string]map[string]string{
			"https://reg.example.com": {"auth": b64("carol:pw"), "email": "c@example.com"},
		}),
	})
	if got := credentials(t, kc, "reg.example.com/app"); got != "carol:pw" {
		t.Errorf("credentials %q", got)
	}
}

func TestKeychainExcludeSecret(t *testing.T) {
	s := configJSONSecret(t, "excluded", map[string]map[string]string{
		"reg.example.com": {"auth": b64("alice:pw")},
	})
	s.Annotations = map[string]string{ExcludeSecretAnnotation: "true"}
	if got := credentials(t, Keychain([]corev1.Secret{s}), "reg.example.com/app"); got != "anonymous" {
		t.Errorf("an excluded secret was used: %q", got)
	}
	s.Annotations[ExcludeSecretAnnotation] = "false"
	if got := credentials(t, Keychain([]corev1.Secret{s}), "reg.example.com/app"); got != "alice:pw" {
		t.Errorf("excludeSecret=false: %q", got)
	}
}

func TestKeychainLongestPathWins(t *testing.T) {
	secrets := []corev1.Secret{
		configJSONSecret(t, "registry-wide", map[string]map[string]string{
			"reg.example.com": {"auth": b64("wide:pw")},
		}),
		configJSONSecret(t, "team", map[string]map[string]string{
			"reg.example.com/team":           {"auth": b64("team:pw")},
			"https://reg.example.com/team/a": {"auth": b64("team-a:pw")},
		}),
	}
	cases := map[string]string{
		"reg.example.com/team/app":   "team:pw",
		"reg.example.com/team/a/x":   "team-a:pw",
		"reg.example.com/team/a":     "team-a:pw",
		"reg.example.com/teams/app":  "wide:pw", // a prefix only at "/"
		"reg.example.com/other/team": "wide:pw",
	}
	for _, order := range [][]corev1.Secret{secrets, {secrets[1], secrets[0]}} {
		kc := Keychain(order)
		for ref, want := range cases {
			if got := credentials(t, kc, ref); got != want {
				t.Errorf("%s: credentials %q, want %q", ref, got, want)
			}
		}
	}
}

func TestKeychainDeterministicAmongEquals(t *testing.T) {
	a := configJSONSecret(t, "a-secret", map[string]map[string]string{"reg.example.com": {"auth": b64("a:pw")}})
	b := configJSONSecret(t, "b-secret", map[string]map[string]string{"reg.example.com": {"auth": b64("b:pw")}})
	for _, order := range [][]corev1.Secret{{a, b}, {b, a}} {
		if got := credentials(t, Keychain(order), "reg.example.com/app"); got != "a:pw" {
			t.Errorf("order %s,%s: credentials %q, want the first secret by name", order[0].Name, order[1].Name, got)
		}
	}
	// Within one secret, scheme or not, the same registry: the key that
	// sorts first wins.
	both := configJSONSecret(t, "both", map[string]map[string]string{
		"reg.example.com":         {"auth": b64("plain:pw")},
		"https://reg.example.com": {"auth": b64("scheme:pw")},
	})
	for range 5 {
		if got := credentials(t, Keychain([]corev1.Secret{both}), "reg.example.com/app"); got != "scheme:pw" {
			t.Fatalf("credentials %q, want those of the key sorting first", got)
		}
	}
}

func TestKeychainDockerHubAliases(t *testing.T) {
	for _, key := range []string{"https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io", "https://registry-1.docker.io/v2/"} {
		kc := Keychain([]corev1.Secret{
			configJSONSecret(t, "hub", map[string]map[string]string{key: {"auth": b64("hubuser:pw")}}),
		})
		for _, ref := range []string{"busybox", "docker.io/library/busybox:1", "index.docker.io/someone/app", "registry-1.docker.io/someone/app"} {
			if got := credentials(t, kc, ref); got != "hubuser:pw" {
				t.Errorf("key %q, %s: credentials %q", key, ref, got)
			}
		}
		if got := credentials(t, kc, "quay.io/someone/app"); got != "anonymous" {
			t.Errorf("key %q used for quay.io: %q", key, got)
		}
	}
	// A path under Docker Hub applies to that namespace only.
	kc := Keychain([]corev1.Secret{
		configJSONSecret(t, "hub", map[string]map[string]string{"docker.io/someone": {"auth": b64("someone:pw")}}),
	})
	if got := credentials(t, kc, "someone/app"); got != "someone:pw" {
		t.Errorf("docker.io/someone: %q", got)
	}
	if got := credentials(t, kc, "busybox"); got != "anonymous" {
		t.Errorf("docker.io/someone used for library/busybox: %q", got)
	}
}

func TestKeychainHostGlob(t *testing.T) {
	kc := Keychain([]corev1.Secret{
		configJSONSecret(t, "glob", map[string]map[string]string{"*.example.com": {"auth": b64("glob:pw")}}),
		configJSONSecret(t, "z-exact", map[string]map[string]string{"exact.example.com": {"auth": b64("exact:pw")}}),
	})
	cases := map[string]string{
		"a.example.com/app":     "glob:pw",
		"exact.example.com/app": "exact:pw", // an exact host beats a glob
		"a.b.example.com/app":   "anonymous",
		"example.com/app":       "anonymous",
	}
	for ref, want := range cases {
		if got := credentials(t, kc, ref); got != want {
			t.Errorf("%s: credentials %q, want %q", ref, got, want)
		}
	}
}

func TestKeychainMalformedSecretsAreSkipped(t *testing.T) {
	good := configJSONSecret(t, "z-good", map[string]map[string]string{"reg.example.com": {"auth": b64("good:pw")}})
	badEntries := configJSONSecret(t, "a-bad-entries", map[string]map[string]string{
		"reg.example.com/team": {"auth": "%%% not base64 %%%"},
		"reg.example.com/x":    {"auth": b64("no-colon")},
		"reg.example.com/y":    {"email": "nothing@example.com"},
		"":                     {"auth": b64("empty:key")},
	})
	secrets := []corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "a-not-json"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte("{not json")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-wrong-shape"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":["a","b"]}`)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-cfg-not-json"}, Type: corev1.SecretTypeDockercfg,
			Data: map[string][]byte{corev1.DockerConfigKey: []byte("[")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-no-data"}, Type: corev1.SecretTypeDockerConfigJson},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-null"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte("null")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-opaque"}, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"reg.example.com":{"auth":"` + b64("opaque:pw") + `"}}}`)}},
		badEntries,
		good,
	}
	kc := Keychain(secrets)
	for _, ref := range []string{"reg.example.com/app", "reg.example.com/team/app", "reg.example.com/x", "reg.example.com/y"} {
		if got := credentials(t, kc, ref); got != "good:pw" {
			t.Errorf("%s: credentials %q, want the good secret's", ref, got)
		}
	}
	if got := credentials(t, Keychain(nil), "reg.example.com/app"); got != "anonymous" {
		t.Errorf("no secrets: %q", got)
	}
}

func TestKeychainStringData(t *testing.T) {
	s := corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "in-memory"},
		Type:       corev1.SecretTypeDockerConfigJson,
		StringData: map[string]string{corev1.DockerConfigJsonKey: `{"auths":{"reg.example.com":{"username":"u","password":"p"}}}`},
	}
	if got := credentials(t, Keychain([]corev1.Secret{s}), "reg.example.com/app"); got != "u:p" {
		t.Errorf("credentials %q", got)
	}
}

func TestKeychainResolveRegistryOnly(t *testing.T) {
	kc := Keychain([]corev1.Secret{
		configJSONSecret(t, "s", map[string]map[string]string{
			"reg.example.com":      {"auth": b64("wide:pw")},
			"reg.example.com/team": {"auth": b64("team:pw")},
		}),
	})
	reg, err := name.NewRegistry("reg.example.com")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := kc.Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := auth.Authorization()
	if got := cfg.Username; got != "wide" {
		t.Errorf("registry-wide lookup chose %q", got)
	}
}
