package upstream

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
)

// ErrForbidden is the class of every refusal by the cluster's registry
// rules; the error that wraps it names the rule.
var ErrForbidden = errors.New("forbidden by the cluster's registry policy")

// configName is how messages name the object holding the rules, so that
// an administrator knows what to edit.
const configName = "images.config.openshift.io/cluster"

// Policy is the cluster's registry rules (images.config.openshift.io/cluster).
type Policy struct {
	// AllowedRegistriesForImport are the registries imports may reach.
	// nil means not configured (everything allowed); an empty non-nil
	// list refuses everything, as the reference's "empty whitelist" does.
	AllowedRegistriesForImport []Location
	// Blocked, Allowed and Insecure are registrySources.blockedRegistries,
	// allowedRegistries and insecureRegistries: "host", "host:port", a
	// leading "*." wildcard ("*.example.com") or any of those followed by
	// a repository path ("quay.io/team"), which then covers only that
	// repository and those under it.
	Blocked, Allowed, Insecure []string
}

// Location is an entry of allowedRegistriesForImport.
type Location struct {
	// DomainName is a "host[:port]" glob: '*' and '?' as in path.Match.
	DomainName string
	// Insecure says the registry is reached over plain HTTP or without
	// verifying its certificate; without a port in DomainName it also
	// decides which ports the entry covers (443, or 80 and 443).
	Insecure bool
}

// forbiddenError is a refusal by one rule: its message is the user's, and
// errors.Is finds ErrForbidden without repeating ErrForbidden's words.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }
func (e *forbiddenError) Unwrap() error { return ErrForbidden }

// Check refuses registry when the policy blocks it or does not allow it:
// the error wraps ErrForbidden and names the rule. registry is
// "host[:port]", optionally followed by "/repository" so that rules scoped
// to a repository apply (Access.Remote passes the repository).
//
// allowedRegistriesForImport is consulted only when checkImportList is
// true: the reference applies it only to callers who may not create
// images or imagestreammappings. registrySources apply to everyone. The
// reference exempts blocked registries that have mirrors; Berth has no
// mirror sets, so it does not.
func (p Policy) Check(registry string, checkImportList bool) error {
	t := parseTarget(registry)
	for _, entry := range p.Blocked {
		if sourceMatches(entry, t) {
			if parseTarget(entry).path != "" {
				return &forbiddenError{fmt.Sprintf("repository %q is blocked by registrySources.blockedRegistries of %s", t.String(), configName)}
			}
			return &forbiddenError{fmt.Sprintf("registry %q is blocked by registrySources.blockedRegistries of %s", t.registry, configName)}
		}
	}
	if len(p.Allowed) > 0 && !anySourceMatches(p.Allowed, t) {
		return &forbiddenError{fmt.Sprintf("registry %q is not in registrySources.allowedRegistries of %s", t.registry, configName)}
	}
	if checkImportList && p.AllowedRegistriesForImport != nil {
		if len(p.AllowedRegistriesForImport) == 0 {
			return &forbiddenError{fmt.Sprintf("registry %q is not allowed by allowedRegistriesForImport of %s: the list is empty", t.registry, configName)}
		}
		allowed := false
		for _, loc := range p.AllowedRegistriesForImport {
			if importMatches(loc, t) {
				allowed = true
				break
			}
		}
		if !allowed {
			return &forbiddenError{fmt.Sprintf("registry %q is not allowed by allowedRegistriesForImport of %s", t.registry, configName)}
		}
	}
	return nil
}

// InsecureFor reports whether registry (as for Check) is listed in
// Insecure, or matched by an allowedRegistriesForImport entry marked
// insecure: either lets Berth use plain HTTP or skip verification.
func (p Policy) InsecureFor(registry string) bool {
	t := parseTarget(registry)
	if anySourceMatches(p.Insecure, t) {
		return true
	}
	for _, loc := range p.AllowedRegistriesForImport {
		if loc.Insecure && importMatches(loc, t) {
			return true
		}
	}
	return false
}

// target is a registry or repository split for matching: host is lower
// case (host names are), port is "" when none was given, path is the
// repository without leading or trailing slashes.
type target struct {
	registry   string // as given, for messages
	host, port string
	path       string
}

func (t target) String() string {
	if t.path == "" {
		return t.registry
	}
	return t.registry + "/" + t.path
}

func parseTarget(s string) target {
	s = strings.TrimSpace(s)
	reg, repo, _ := strings.Cut(s, "/")
	host, port := splitHostPort(reg)
	return target{registry: reg, host: host, port: port, path: strings.Trim(repo, "/")}
}

// splitHostPort splits "host", "host:port", "[v6]" and "[v6]:port".
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return strings.ToLower(h), p
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")), ""
}

// Docker Hub answers to several names; ggcr calls it index.docker.io,
// users write docker.io, and docker configs carry the v1 URL. Rules and
// credentials for one name apply to all.
const hubHost = "index.docker.io"

func isHub(host string) bool {
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return true
	}
	return false
}

// hostCandidates is the names under which host may be listed.
func hostCandidates(host string) []string {
	if isHub(host) {
		return []string{"docker.io", "index.docker.io", "registry-1.docker.io"}
	}
	return []string{host}
}

func anySourceMatches(entries []string, t target) bool {
	for _, e := range entries {
		if sourceMatches(e, t) {
			return true
		}
	}
	return false
}

// sourceMatches applies a registrySources entry as the container runtime
// does (containers/image registries.conf): "*.example.com" covers every
// subdomain but not example.com itself; an entry without a port covers
// the host on any port, one with a port only that port (a reference
// without a port is on 443); an entry with a path covers that repository
// and those below it.
func sourceMatches(entry string, t target) bool {
	e := parseTarget(entry)
	if e.host == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(e.host, "*."); ok {
		if !strings.HasSuffix(t.host, "."+suffix) {
			return false
		}
	} else if e.host != t.host && !(isHub(e.host) && isHub(t.host)) {
		return false
	}
	if e.port != "" && e.port != t.port && !(t.port == "" && e.port == "443") {
		return false
	}
	if e.path != "" {
		return t.path == e.path || strings.HasPrefix(t.path, e.path+"/")
	}
	return true
}

// importMatches applies an allowedRegistriesForImport entry as the
// reference's whitelister does: host and port are globs; without a port
// in the pattern a secure entry covers 443 and an insecure one 80 and 443;
// a reference without a port counts as on those default ports.
func importMatches(loc Location, t target) bool {
	pattern := strings.ToLower(strings.TrimSpace(loc.DomainName))
	hostGlob, portGlob, hasPort := strings.Cut(pattern, ":")
	if hostGlob == "" || strings.Contains(portGlob, ":") {
		return false // the reference refuses such entries ("too many colons")
	}
	hostOK := false
	for _, h := range hostCandidates(t.host) {
		if ok, err := path.Match(hostGlob, h); err == nil && ok {
			hostOK = true
			break
		}
	}
	if !hostOK {
		return false
	}
	defaults := []string{"443"}
	if loc.Insecure {
		defaults = []string{"80", "443"}
	}
	if !hasPort {
		if t.port == "" {
			return true
		}
		for _, d := range defaults {
			if t.port == d {
				return true
			}
		}
		return false
	}
	ports := []string{t.port}
	if t.port == "" {
		ports = defaults
	}
	for _, p := range ports {
		if ok, err := path.Match(portGlob, p); err == nil && ok {
			return true
		}
	}
	return false
}
