package upstream

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyBlocked(t *testing.T) {
	cases := []struct {
		blocked  []string
		registry string
		refused  bool
	}{
		{[]string{"127.0.0.1:5000"}, "127.0.0.1:5000", true},
		{[]string{"127.0.0.1:5000"}, "127.0.0.1:5000/team/app", true},
		{[]string{"127.0.0.1:5000"}, "127.0.0.1:5001", false},
		{[]string{"127.0.0.1:5000"}, "127.0.0.1", false},
		// Without a port an entry covers every port, as in the runtime.
		{[]string{"quay.io"}, "quay.io", true},
		{[]string{"quay.io"}, "quay.io:8443", true},
		{[]string{"quay.io"}, "QUAY.IO/team/app", true},
		{[]string{"quay.io"}, "myquay.io", false},
		{[]string{"quay.io:443"}, "quay.io", true},
		{[]string{"quay.io:443"}, "quay.io:8443", false},
		{[]string{"*.example.com"}, "a.example.com", true},
		{[]string{"*.example.com"}, "a.b.example.com:5000", true},
		{[]string{"*.example.com"}, "example.com", false},
		{[]string{"*.example.com"}, "badexample.com", false},
		{[]string{"docker.io"}, "index.docker.io/library/busybox", true},
		{[]string{"registry-1.docker.io"}, "docker.io", true},
		{[]string{"quay.io/evil"}, "quay.io/evil/app", true},
		{[]string{"quay.io/evil"}, "quay.io/evil", true},
		{[]string{"quay.io/evil"}, "quay.io/evilness/app", false},
		{[]string{"quay.io/evil"}, "quay.io/good/app", false},
		{[]string{"quay.io/evil"}, "quay.io", false},
		{nil, "quay.io", false},
	}
	for _, c := range cases {
		err := Policy{Blocked: c.blocked}.Check(c.registry, false)
		if (err != nil) != c.refused {
			t.Errorf("Blocked %q, Check(%q) = %v, want refused %v", c.blocked, c.registry, err, c.refused)
			continue
		}
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Errorf("Check(%q) error %v does not wrap ErrForbidden", c.registry, err)
		}
	}
}

func TestPolicyMessagesNameTheRule(t *testing.T) {
	cases := []struct {
		policy   Policy
		registry string
		import_  bool
		want     string
	}{
		{Policy{Blocked: []string{"127.0.0.1:5000"}}, "127.0.0.1:5000/team/app", false,
			`registry "127.0.0.1:5000" is blocked by registrySources.blockedRegistries of images.config.openshift.io/cluster`},
		{Policy{Blocked: []string{"quay.io/evil"}}, "quay.io/evil/app", false,
			`repository "quay.io/evil/app" is blocked by registrySources.blockedRegistries of images.config.openshift.io/cluster`},
		{Policy{Allowed: []string{"registry.example.com"}}, "quay.io/team/app", false,
			`registry "quay.io" is not in registrySources.allowedRegistries of images.config.openshift.io/cluster`},
		{Policy{AllowedRegistriesForImport: []Location{{DomainName: "registry.example.com"}}}, "quay.io/team/app", true,
			`registry "quay.io" is not allowed by allowedRegistriesForImport of images.config.openshift.io/cluster`},
		{Policy{AllowedRegistriesForImport: []Location{}}, "quay.io", true,
			`registry "quay.io" is not allowed by allowedRegistriesForImport of images.config.openshift.io/cluster: the list is empty`},
	}
	for _, c := range cases {
		err := c.policy.Check(c.registry, c.import_)
		if err == nil || err.Error() != c.want {
			t.Errorf("Check(%q) = %v, want %q", c.registry, err, c.want)
		}
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("Check(%q) error does not wrap ErrForbidden", c.registry)
		}
		if reason, msg := Classify(err); reason != ReasonForbidden || msg != c.want {
			t.Errorf("Classify(%v) = %q, %q", err, reason, msg)
		}
	}
}

func TestPolicyAllowed(t *testing.T) {
	p := Policy{Allowed: []string{"quay.io", "*.corp.example", "reg.local:5000", "docker.io/library"}}
	cases := []struct {
		registry string
		ok       bool
	}{
		{"quay.io", true},
		{"quay.io:8443/team/app", true},
		{"registry.corp.example:5000", true},
		{"corp.example", false},
		{"reg.local:5000", true},
		{"reg.local", false},
		{"index.docker.io/library/busybox", true},
		{"index.docker.io/someone/app", false},
		{"ghcr.io", false},
	}
	for _, c := range cases {
		if err := p.Check(c.registry, false); (err == nil) != c.ok {
			t.Errorf("Check(%q) = %v, want allowed %v", c.registry, err, c.ok)
		}
	}
	// Blocked is consulted first: its message wins.
	both := Policy{Blocked: []string{"quay.io"}, Allowed: []string{"ghcr.io"}}
	if err := both.Check("quay.io", false); err == nil || !strings.Contains(err.Error(), "blockedRegistries") {
		t.Errorf("Check with both lists = %v", err)
	}
}

func TestPolicyImportList(t *testing.T) {
	loc := func(domain string, insecure bool) []Location {
		return []Location{{DomainName: domain, Insecure: insecure}}
	}
	cases := []struct {
		list     []Location
		registry string
		ok       bool
	}{
		{nil, "anything.example:1234", true},
		{[]Location{}, "quay.io", false},
		// No port in the pattern: secure covers 443 (or none given).
		{loc("quay.io", false), "quay.io", true},
		{loc("quay.io", false), "quay.io:443/team/app", true},
		{loc("quay.io", false), "quay.io:80", false},
		{loc("quay.io", false), "quay.io:5000", false},
		// Insecure covers 80 and 443 (or none given).
		{loc("quay.io", true), "quay.io", true},
		{loc("quay.io", true), "quay.io:80", true},
		{loc("quay.io", true), "quay.io:443", true},
		{loc("quay.io", true), "quay.io:5000", false},
		// Host globs with path.Match semantics.
		{loc("*.example.com", false), "a.example.com", true},
		{loc("*.example.com", false), "a.b.example.com", true},
		{loc("*.example.com", false), "example.com", false},
		{loc("reg?.io", false), "reg1.io", true},
		{loc("reg?.io", false), "reg12.io", false},
		{loc("QUAY.io", false), "quay.IO", true},
		// Port globs.
		{loc("reg.local:50??", false), "reg.local:5000", true},
		{loc("reg.local:50??", false), "reg.local:6000", false},
		{loc("reg.local:*", false), "reg.local:1234", true},
		{loc("reg.local:*", false), "reg.local", true},
		{loc("reg.local:443", false), "reg.local", true},
		{loc("reg.local:80", false), "reg.local", false},
		{loc("reg.local:80", true), "reg.local", true},
		{loc("127.0.0.1:*", false), "127.0.0.1:39123", true},
		// Docker Hub's names are one registry.
		{loc("docker.io", false), "index.docker.io/library/busybox", true},
		{loc("index.docker.io", false), "docker.io", true},
		// Malformed patterns match nothing.
		{loc("a:b:c", false), "a:b", false},
		{loc("[", false), "[", false},
	}
	for _, c := range cases {
		err := Policy{AllowedRegistriesForImport: c.list}.Check(c.registry, true)
		if (err == nil) != c.ok {
			t.Errorf("allowedRegistriesForImport %+v, Check(%q) = %v, want allowed %v", c.list, c.registry, err, c.ok)
		}
	}
	// Callers who may create images skip the list, even an empty one.
	if err := (Policy{AllowedRegistriesForImport: []Location{}}).Check("quay.io", false); err != nil {
		t.Errorf("Check without the import list = %v", err)
	}
}

func TestPolicyInsecureFor(t *testing.T) {
	p := Policy{
		Insecure: []string{"reg.local:5000", "*.lab", "plain.example", "quay.io/team"},
		AllowedRegistriesForImport: []Location{
			{DomainName: "insecure.io", Insecure: true},
			{DomainName: "secure.io"},
		},
	}
	cases := []struct {
		registry string
		want     bool
	}{
		{"reg.local:5000", true},
		{"reg.local:5001", false},
		{"reg.local", false},
		{"a.lab", true},
		{"a.lab:8080", true},
		{"lab", false},
		{"plain.example", true},
		{"plain.example:5000", true},
		{"quay.io/team/app", true},
		{"quay.io/other/app", false},
		{"insecure.io", true},
		{"insecure.io:80", true},
		{"insecure.io:5000", false},
		{"secure.io", false},
		{"unknown.example", false},
	}
	for _, c := range cases {
		if got := p.InsecureFor(c.registry); got != c.want {
			t.Errorf("InsecureFor(%q) = %v, want %v", c.registry, got, c.want)
		}
	}
}
