package imagestream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/upstream"
)

// Proxy-cache projects (berth.io/v1 ProxyCache, named after a project):
// a pull of <project>/<name>:<tag> that this registry cannot answer yet
// is answered from <upstream>/<prefix>/<name>:<tag>, imported as it goes
// (the stream and its history are created; the layers come by
// pull-through). A tag already here is served for RecheckInterval before
// the upstream is asked again whether it moved, and is served as it is
// when the upstream fails.

// DefaultRecheck is how long a proxied tag is served before the upstream
// is asked again.
const DefaultRecheck = 5 * time.Minute

// proxyConfigTTL is how long a project's ProxyCache object is trusted
// before it is read again (a change applies within it).
const proxyConfigTTL = 5 * time.Second

// maxCheckedTags bounds the record of when tags were last checked.
const maxCheckedTags = 100000

type proxyState struct {
	mu      sync.Mutex
	configs map[string]proxyConfig // by project
	checked map[string]time.Time   // repo:tag → last asked upstream
	flights map[string]*sync.Mutex // repo:ref → one resolution at a time
}

type proxyConfig struct {
	pc   *berthv1.ProxyCache // nil: not a proxy-cache project
	read time.Time
}

func (s *Service) proxyConfig(ctx context.Context, project string) (*berthv1.ProxyCache, error) {
	p := &s.proxy
	p.mu.Lock()
	c, ok := p.configs[project]
	p.mu.Unlock()
	if ok && time.Since(c.read) < proxyConfigTTL {
		return c.pc, nil
	}
	o, err := s.specs.GetObject(ctx, store.ObjectKey{Group: berthv1.GroupName, Resource: "proxycaches", Name: project})
	var pc *berthv1.ProxyCache
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		pc = &berthv1.ProxyCache{}
		if err := json.Unmarshal(o.Body, pc); err != nil {
			return nil, fmt.Errorf("decode the proxy cache of %s: %w", project, err)
		}
	}
	p.mu.Lock()
	if p.configs == nil || len(p.configs) > 10000 {
		p.configs = map[string]proxyConfig{}
	}
	p.configs[project] = proxyConfig{pc: pc, read: time.Now()}
	p.mu.Unlock()
	return pc, nil
}

// flight serializes the resolutions of one reference.
func (p *proxyState) flight(key string) *sync.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.flights == nil {
		p.flights = map[string]*sync.Mutex{}
	}
	m, ok := p.flights[key]
	if !ok {
		if len(p.flights) > 10000 {
			p.flights = map[string]*sync.Mutex{} // held ones stay held by their callers
		}
		m = &sync.Mutex{}
		p.flights[key] = m
	}
	return m
}

func (p *proxyState) lastChecked(key string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checked[key]
}

func (p *proxyState) markChecked(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.checked == nil || len(p.checked) >= maxCheckedTags {
		p.checked = map[string]time.Time{}
	}
	p.checked[key] = time.Now()
}

// ResolvePull makes sure reference (a tag or a digest) of repo is here
// when repo's project is a proxy cache (registry.Proxy); it does nothing
// for other projects. A failure wraps errdefs.ErrNotFound (the upstream
// does not have it) or registry.ErrUpstreamUnavailable.
func (s *Service) ResolvePull(ctx context.Context, repo, reference string) error {
	project, image, _ := strings.Cut(repo, "/")
	pc, err := s.proxyConfig(ctx, project)
	if err != nil || pc == nil || s.importer == nil {
		return err
	}
	upRepo := pc.Spec.Upstream + "/" + image
	if pc.Spec.Prefix != "" {
		upRepo = pc.Spec.Upstream + "/" + pc.Spec.Prefix + "/" + image
	}
	byDigest := strings.Contains(reference, ":")
	local, lerr := s.specs.Manifest(ctx, repo, reference)
	if lerr != nil && !errors.Is(lerr, errdefs.ErrNotFound) {
		return lerr
	}
	if lerr == nil && byDigest {
		return nil // content-addressed: never changes
	}
	recheck := DefaultRecheck
	if pc.Spec.RecheckInterval != nil {
		recheck = pc.Spec.RecheckInterval.Duration
	}
	key := repo + ":" + reference
	if lerr == nil && time.Since(s.proxy.lastChecked(key)) < recheck {
		return nil
	}
	f := s.proxy.flight(key)
	f.Lock()
	defer f.Unlock()
	// Another pull may have resolved it while this one waited.
	if lerr == nil && time.Since(s.proxy.lastChecked(key)) < recheck {
		return nil
	}
	if _, err := s.specs.Manifest(ctx, repo, reference); err == nil && byDigest {
		return nil
	}
	pullSpec := upRepo + ":" + reference
	if byDigest {
		pullSpec = upRepo + "@" + reference
	}
	o := ImportOptions{Insecure: pc.Spec.Insecure, PreserveOriginal: true, ForPull: true}
	if lerr == nil {
		// Here already: ask whether the tag moved before fetching it again.
		if same, err := s.sameUpstreamDigest(ctx, project, pullSpec, o, string(local.Digest)); err == nil && same {
			s.proxy.markChecked(key)
			return nil
		}
	}
	tag := reference
	if byDigest {
		tag = ""
	}
	f2, err := s.Fetch(ctx, project, repo, pullSpec, o)
	if err == nil {
		err = s.tags.RecordImport(ctx, repo, tag, store.Imported{Manifests: f2.Manifests, Source: f2.Source, Insecure: o.Insecure})
	}
	if err != nil {
		if lerr == nil {
			// Stale is better than nothing: serve what is here, and ask
			// again after the interval rather than on every pull.
			s.proxy.markChecked(key)
			return nil
		}
		var ie *ImportError
		if errors.As(err, &ie) {
			if ie.Reason == upstream.ReasonNotFound {
				return fmt.Errorf("%s: %s: %w", pullSpec, ie.Message, errdefs.ErrNotFound)
			}
			return fmt.Errorf("%s: %s: %w", pullSpec, ie.Message, registry.ErrUpstreamUnavailable)
		}
		return err
	}
	s.proxy.markChecked(key)
	return nil
}

// sameUpstreamDigest asks the upstream (a HEAD) whether pullSpec still
// names digest.
func (s *Service) sameUpstreamDigest(ctx context.Context, project, pullSpec string, o ImportOptions, digest string) (bool, error) {
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(pullSpec, nameOpts...)
	if err != nil {
		return false, err
	}
	opts, err := s.importer.PullUpstreams().Remote(ctx, project, ref, o.Insecure, false)
	if err != nil {
		return false, err
	}
	desc, err := remote.Head(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return false, err
	}
	return desc.Digest.String() == digest, nil
}
