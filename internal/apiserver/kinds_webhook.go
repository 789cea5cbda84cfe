package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/webhook"
)

// Webhooks (berth.io/v1 Webhook, namespaced: its project's events) and
// ClusterWebhooks (cluster-scoped: every project's events) are stored
// kinds of one Go type, berthv1.Webhook. Users write the spec; the
// server's webhook dispatcher writes the status (the status subresource),
// which writes through the object keep. Who may write them is roles.go's:
// a project's admin and registry-admin its Webhooks, cluster admins
// ClusterWebhooks; nobody else reads them, since a URL may carry a token.

const groupBerth = berthv1.GroupName

// maxWebhookURLBytes bounds spec.url, as browsers and most servers bound
// a URL.
const maxWebhookURLBytes = 2048

// destinationCheckTimeout bounds the resolution of a webhook's host when
// it is written: a DNS server that does not answer fails the write rather
// than holding it.
const destinationCheckTimeout = 10 * time.Second

var (
	webhookKind        = newWebhookKind("webhooks", false)
	clusterWebhookKind = newWebhookKind("clusterwebhooks", true)
)

func newWebhookKind(resource string, cluster bool) *storedKind {
	info := servedResource(groupBerth, resource)
	k := &storedKind{
		info: info,
		// The two kinds share the type; each object says which it is.
		new: func() object {
			return &berthv1.Webhook{TypeMeta: metav1.TypeMeta{APIVersion: info.groupVersion(), Kind: info.Kind}}
		},
		hasStatus: true,
		spec:      func(o object) any { return o.(*berthv1.Webhook).Spec },
		validate:  func(o object) []string { return webhookProblems(o.(*berthv1.Webhook), cluster) },
		columns:   webhookColumns,
		cells:     webhookCells,
	}
	k.admit = func(ctx context.Context, s *Server, o object) error {
		return s.admitWebhook(ctx, k, o.(*berthv1.Webhook))
	}
	return k
}

// admitWebhook checks what needs the request and the cluster's state, and
// only for what the write changes (everything on a create): the caller
// may read the Secret spec.secretRef signs with, and spec.url reaches a
// destination the settings in effect allow. A write that keeps both, such
// as the dispatcher's status, is not checked again: a narrowed list of
// allowed destinations stops deliveries (the dispatcher checks each) but
// does not lock the object.
func (s *Server) admitWebhook(ctx context.Context, k *storedKind, w *berthv1.Webhook) error {
	var prev *berthv1.WebhookSpec
	rec, err := s.opts.Store.GetObject(ctx, k.key(w.Namespace, w.Name))
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read %s %q to compare with: %w", k.info.Resource, w.Name, err)
	default:
		cur, err := k.fromStored(rec)
		if err != nil {
			return err
		}
		// A create has a fresh UID; an update, the stored object's.
		if cur.GetUID() == w.GetUID() {
			prev = &cur.(*berthv1.Webhook).Spec
		}
	}
	if ref := w.Spec.SecretRef; ref != nil && (prev == nil || !reflect.DeepEqual(prev.SecretRef, ref)) {
		if err := s.mayUseSecret(ctx, k, w, ref); err != nil {
			return err
		}
	}
	if prev != nil && prev.URL == w.Spec.URL {
		return nil
	}
	d, err := webhook.NewDestinations(settings.From(ctx).WebhookDestinations)
	if err != nil {
		// The operator puts no invalid list in effect: this is a bug, and
		// refusing every destination would hide it.
		return fmt.Errorf("the webhook allowed destinations in effect: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, destinationCheckTimeout)
	defer cancel()
	if err := d.CheckURL(ctx, w.Spec.URL); err != nil {
		// The error names the host or address, never the URL, which may
		// hold a token.
		what := "Invalid value"
		if errors.Is(err, webhook.ErrDestinationRefused) {
			what = "Forbidden"
		}
		return invalid("%s %q is invalid: spec.url: %s: %v", k.info.Kind, w.Name, what, err)
	}
	return nil
}

// mayUseSecret refuses a Secret the caller may not read: the registry
// would otherwise sign with it for someone who cannot see it (a
// registry-admin of the project, say, who holds no right on Secrets).
func (s *Server) mayUseSecret(ctx context.Context, k *storedKind, w *berthv1.Webhook, ref *berthv1.SecretKeySelector) error {
	ns := ref.Namespace
	if ns == "" {
		ns = w.Namespace
	}
	u := auth.IdentityFrom(ctx).User
	ok, err := s.opts.Authorizer.Authorize(ctx, u, "get", auth.Resource{Resource: "secrets"}, ns)
	if err != nil {
		return fmt.Errorf("may %s read secrets in %q: %w", u.Name, ns, err)
	}
	if ok {
		return nil
	}
	return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
		"%s.%s %q is forbidden: User %q may not sign with the Secret %s/%s: they cannot get secrets in project %q themselves",
		k.info.Resource, groupBerth, w.Name, u.Name, ns, ref.Name, ns)}
}

// webhookProblems are the rules of a Webhook's spec (cluster: a
// ClusterWebhook's), in Kubernetes' words. The URL is never quoted back:
// it may hold a token.
func webhookProblems(w *berthv1.Webhook, cluster bool) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	spec := &w.Spec
	problems = append(problems, webhookURLProblems(spec.URL)...)

	seen := map[string]int{}
	for i, e := range spec.Events {
		switch j, dup := seen[e]; {
		case !slices.Contains(webhook.Filters, e):
			add("spec.events[%d]: Unsupported value: %q: supported values: %s", i, e, quotedList(webhook.Filters))
		case dup:
			add("spec.events[%d]: Duplicate value: %q: also spec.events[%d]", i, e, j)
		default:
			seen[e] = i
		}
	}

	seen = map[string]int{}
	for i, name := range spec.Streams {
		field := fmt.Sprintf("spec.streams[%d]", i)
		if cluster {
			if err := names.Repository(name); err != nil {
				add("%s: Invalid value: %q: must be project/stream: %v", field, name, err)
				continue
			}
		} else {
			if !names.Component(name) {
				add("%s: Invalid value: %q: must be an image stream name: lowercase letters and digits separated by '.', '_', '__' or runs of '-'", field, name)
				continue
			}
			if err := names.Repository(w.Namespace + "/" + name); err != nil {
				add("%s: Invalid value: %q: %v", field, name, err)
				continue
			}
		}
		if j, dup := seen[name]; dup {
			add("%s: Duplicate value: %q: also spec.streams[%d]", field, name, j)
		}
		seen[name] = i
	}

	if ref := spec.SecretRef; ref != nil {
		switch {
		case ref.Name == "":
			add("spec.secretRef.name: Required value")
		default:
			for _, msg := range validation.IsDNS1123Subdomain(ref.Name) {
				add("spec.secretRef.name: Invalid value: %q: %s", ref.Name, msg)
			}
		}
		switch {
		case ref.Key == "":
			add("spec.secretRef.key: Required value")
		default:
			for _, msg := range validation.IsConfigMapKey(ref.Key) {
				add("spec.secretRef.key: Invalid value: %q: %s", ref.Key, msg)
			}
		}
		switch {
		case cluster && ref.Namespace == "":
			add("spec.secretRef.namespace: Required value: a ClusterWebhook names the project of its Secret")
		case !cluster && ref.Namespace != "" && ref.Namespace != w.Namespace:
			add("spec.secretRef.namespace: Forbidden: a Webhook signs with a Secret of its own project (%q) only", w.Namespace)
		case ref.Namespace != "":
			for _, msg := range validation.IsDNS1123Label(ref.Namespace) {
				add("spec.secretRef.namespace: Invalid value: %q: %s", ref.Namespace, msg)
			}
		}
	}
	return problems
}

// webhookURLProblems checks spec.url without the network: the
// destination is admitWebhook's.
func webhookURLProblems(raw string) []string {
	const field = "spec.url"
	if raw == "" {
		return []string{field + ": Required value"}
	}
	if len(raw) > maxWebhookURLBytes {
		return []string{fmt.Sprintf("%s: Too long: may not be more than %d bytes", field, maxWebhookURLBytes)}
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL; its cause does not.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return []string{fmt.Sprintf("%s: Invalid value: not a URL: %v", field, err)}
	}
	var problems []string
	switch u.Scheme {
	case "http", "https":
		if u.Hostname() == "" {
			problems = append(problems, field+": Invalid value: the URL has no host")
		}
	case "":
		// Without a scheme, what was meant as the host is the path.
		problems = append(problems, field+": Invalid value: the URL has no scheme: it must start with http:// or https://")
	default:
		problems = append(problems, fmt.Sprintf("%s: Unsupported value: %q: supported values: \"http\", \"https\"", field, u.Scheme))
	}
	if u.User != nil {
		problems = append(problems, field+": Invalid value: the URL must not contain user information (user:password@); sign deliveries with spec.secretRef instead")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			problems = append(problems, fmt.Sprintf("%s: Invalid value: port %q: must be between 1 and 65535", field, p))
		}
	}
	return problems
}

// quotedList is Kubernetes' list of supported values: "a", "b", "c".
func quotedList(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = strconv.Quote(v)
	}
	return strings.Join(quoted, ", ")
}

var webhookColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "URL", Type: "string", Description: "Where events are POSTed: scheme, host and path (never the query or user information, which may hold a token)."},
	{Name: "Events", Type: "string", Description: "The events sent: push, pull, delete, tag, or all."},
	{Name: "Pending", Type: "integer", Description: "Events waiting to be delivered or retried."},
	{Name: "Failures", Type: "integer", Description: "Failed attempts since the last success."},
	columnAge}

func webhookCells(o object) []any {
	w := o.(*berthv1.Webhook)
	events := "all"
	if len(w.Spec.Events) > 0 {
		events = strings.Join(w.Spec.Events, ",")
	}
	return []any{w.Name, displayURL(w.Spec.URL), events, w.Status.Pending, w.Status.ConsecutiveFailures, age(w)}
}

// displayURL is the part of a webhook URL a table shows: scheme, host and
// path. The query and user information, where tokens go, are left out.
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<invalid>"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}
