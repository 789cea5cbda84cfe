package apiserver

import (
	"fmt"
	"net"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/names"
)

// ProxyCaches (berth.io/v1, cluster-scoped, named after a project): the
// project serves images of an upstream registry on first pull
// (imagestream.Service.ResolvePull). Only cluster admins write them (no
// role but cluster-admin names the resource): a proxy cache makes the
// registry reach a host of the writer's choosing.
var proxyCacheKind = &storedKind{
	info: servedResource(groupBerth, "proxycaches"),
	new: func() object {
		return &berthv1.ProxyCache{TypeMeta: metav1.TypeMeta{APIVersion: groupBerth + "/v1", Kind: "ProxyCache"}}
	},
	spec:         func(o object) any { return o.(*berthv1.ProxyCache).Spec },
	nameProblems: proxyCacheNameProblems,
	validate:     func(o object) []string { return proxyCacheProblems(o.(*berthv1.ProxyCache)) },
	columns: []metav1.TableColumnDefinition{columnName,
		{Name: "Upstream", Type: "string", Description: "Where the project's images come from: registry[/prefix]."},
		{Name: "Recheck", Type: "string", Description: "How long a tag is served before the upstream is asked again."}, columnAge},
	cells: func(o object) []any {
		p := o.(*berthv1.ProxyCache)
		up := p.Spec.Upstream
		if p.Spec.Prefix != "" {
			up += "/" + p.Spec.Prefix
		}
		recheck := "5m0s"
		if p.Spec.RecheckInterval != nil {
			recheck = p.Spec.RecheckInterval.Duration.String()
		}
		return []any{p.Name, up, recheck, age(p)}
	},
}

func proxyCacheNameProblems(name string) []string {
	if !validName(name) {
		return []string{fmt.Sprintf("metadata.name: Invalid value: %q: a ProxyCache is named after its project: %s", name, nameRule)}
	}
	return nil
}

func proxyCacheProblems(p *berthv1.ProxyCache) []string {
	var problems []string
	host := p.Spec.Upstream
	switch {
	case host == "":
		problems = append(problems, "spec.upstream: Required value: the upstream registry, host[:port]")
	case strings.ContainsAny(host, "/@ ") || strings.Contains(host, "://"):
		problems = append(problems, fmt.Sprintf("spec.upstream: Invalid value: %q: a registry is host[:port], without a scheme or a path", host))
	default:
		if h, port, err := net.SplitHostPort(host); err == nil && (h == "" || port == "") {
			problems = append(problems, fmt.Sprintf("spec.upstream: Invalid value: %q: not host[:port]", host))
		}
	}
	if pre := p.Spec.Prefix; pre != "" {
		for _, part := range strings.Split(pre, "/") {
			if !names.Component(part) {
				problems = append(problems, fmt.Sprintf("spec.prefix: Invalid value: %q: path components are %s", pre, nameRule))
				break
			}
		}
	}
	if r := p.Spec.RecheckInterval; r != nil && r.Duration < 0 {
		problems = append(problems, fmt.Sprintf("spec.recheckInterval: Invalid value: %q: must not be negative", r.Duration))
	}
	return problems
}
