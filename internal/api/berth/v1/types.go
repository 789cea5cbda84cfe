// Package berthv1 holds Berth's own kinds (group berth.io), which have no
// counterpart on the reference platform: webhooks, which send registry
// events to HTTP endpoints.
package berthv1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// GroupName is the API group of these kinds.
const GroupName = "berth.io"

// Webhook is berth.io/v1 Webhook (namespaced: the events of its project)
// and berth.io/v1 ClusterWebhook (cluster-scoped: every project's events);
// the two kinds share this type and differ by Kind.
type Webhook struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              WebhookSpec   `json:"spec"`
	Status            WebhookStatus `json:"status,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (w *Webhook) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(w)
	if err != nil {
		panic(err) // a Webhook always marshals: a programming error
	}
	out := &Webhook{}
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// WebhookSpec is what a project (or cluster) admin sets.
type WebhookSpec struct {
	// URL is where events are POSTed (http or https). A destination in
	// the cluster's own network (private, loopback, link-local) is refused
	// unless the registry Config's spec.webhooks.allowedDestinations lists
	// it.
	URL string `json:"url" description:"Where events are POSTed (http or https). Private, loopback and link-local destinations are refused unless the registry Config's spec.webhooks.allowedDestinations lists them."`
	// Events filters by event: push, pull, delete, tag (all when empty).
	Events []string `json:"events,omitempty" description:"Which events to send: push, pull, delete, tag (all when empty)."`
	// Streams filters by image stream name (all when empty); in a
	// ClusterWebhook a name is project/stream.
	Streams []string `json:"streams,omitempty" description:"Which image streams' events to send (all when empty); project/stream in a ClusterWebhook."`
	// SecretRef names a Secret key whose value signs each payload
	// (HMAC-SHA256, header X-Berth-Signature: sha256=<hex>). The API
	// server lets only those who may get Secrets in its project set or
	// change it.
	SecretRef *SecretKeySelector `json:"secretRef,omitempty" description:"A Secret key whose value signs each payload with HMAC-SHA256, sent as X-Berth-Signature: sha256=<hex>."`
	// Disabled stops deliveries; events are not queued meanwhile.
	Disabled bool `json:"disabled,omitempty" description:"Send nothing; events are not queued meanwhile."`
}

// SecretKeySelector names a key of a Secret.
type SecretKeySelector struct {
	// Namespace is the Secret's project: the Webhook's own (and only it)
	// for a Webhook; required for a ClusterWebhook.
	Namespace string `json:"namespace,omitempty" description:"The Secret's project: the Webhook's own for a Webhook; required for a ClusterWebhook."`
	Name      string `json:"name" description:"The Secret's name."`
	Key       string `json:"key" description:"The key of the Secret's data whose value is the signing key."`
}

// WebhookStatus is what the registry reports of the webhook's deliveries.
type WebhookStatus struct {
	// Deliveries are the last attempts, newest first (at most 10).
	Deliveries []WebhookDelivery `json:"deliveries,omitempty" description:"The last delivery attempts, newest first (at most 10)."`
	// Pending counts the events waiting to be delivered (or retried).
	Pending int64 `json:"pending" description:"Events waiting to be delivered or retried."`
	// ConsecutiveFailures counts the failed attempts since the last success.
	ConsecutiveFailures int64        `json:"consecutiveFailures" description:"Failed attempts since the last success."`
	LastSuccessTime     *metav1.Time `json:"lastSuccessTime,omitempty"`
	LastFailureTime     *metav1.Time `json:"lastFailureTime,omitempty"`
}

// WebhookDelivery is one delivery attempt.
type WebhookDelivery struct {
	ID      string      `json:"id" description:"The event's ID (the CloudEvents id, stable across attempts)."`
	Type    string      `json:"type" description:"The event's type, e.g. io.berth.image.pushed."`
	Subject string      `json:"subject" description:"project/stream:tag (or @digest)."`
	Time    metav1.Time `json:"time" description:"When the attempt ended."`
	Attempt int64       `json:"attempt" description:"1 for the first attempt."`
	// Status is the HTTP status answered, 0 when none came.
	Status int    `json:"status,omitempty" description:"The HTTP status the endpoint answered (absent when none came)."`
	Error  string `json:"error,omitempty" description:"Why the attempt failed."`
	// Result is Delivered, Retrying or Failed (given up).
	Result string `json:"result" description:"Delivered, Retrying or Failed (given up)."`
}

// ProxyCache is berth.io/v1 ProxyCache (cluster-scoped, named after a
// project): the project serves <project>/<name>:<tag> from the upstream
// registry's <prefix>/<name>:<tag> on first pull, creating the stream and
// its history as it goes (Harbor's proxy-cache projects, zot's on-demand
// sync). Only cluster admins write them.
type ProxyCache struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ProxyCacheSpec `json:"spec"`
}

// DeepCopyObject implements runtime.Object.
func (p *ProxyCache) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // a ProxyCache always marshals: a programming error
	}
	out := &ProxyCache{}
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// ProxyCacheSpec says where the project's images come from.
type ProxyCacheSpec struct {
	// Upstream is the registry: host[:port] (docker.io, quay.io, …).
	Upstream string `json:"upstream" description:"The upstream registry, host[:port] (docker.io, quay.io, registry.example.com:5000)."`
	// Prefix is put before each image name upstream ("library" for
	// Docker Hub's official images).
	Prefix string `json:"prefix,omitempty" description:"Put before each image name upstream: with prefix library, <project>/busybox is docker.io/library/busybox."`
	// RecheckInterval is how long a pulled tag is served without asking
	// the upstream whether it moved (default 5m).
	RecheckInterval *metav1.Duration `json:"recheckInterval,omitempty" description:"How long a tag is served before the upstream is asked again whether it moved (default 5m). The cache answers when the upstream fails."`
	// Insecure allows plain HTTP or an unverified certificate.
	Insecure bool `json:"insecure,omitempty" description:"Reach the upstream over plain HTTP or without verifying its certificate."`
}

// AuditEvent is a row of the registry's audit log (read-only): who did
// what to which object, and when. Its name is the row's number; newer
// rows have greater numbers.
type AuditEvent struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Actor is the user who made the change; empty for Berth itself (a
	// scheduled import, pruning).
	Actor string `json:"actor"`
	// Action is push, pull, tag, untag, delete, create, update or prune.
	Action string `json:"action"`
	// Resource and Name are what it was done to: manifests of a
	// repository (Name "project/stream"), tags ("project/stream:tag"),
	// imagestreams, projects, tokens (Name: the user), or an API object
	// of the project (its plural, and its name).
	Resource string `json:"resource"`
	Name     string `json:"name"`
	Digest   string `json:"digest,omitempty"`
	// Detail says the rest: why a tag moved, a binding's role and
	// subjects, how many pulls a pull row counts.
	Detail string `json:"detail,omitempty"`
	// Time is when it was done (creationTimestamp, to the microsecond).
	Time metav1.MicroTime `json:"time"`
}
