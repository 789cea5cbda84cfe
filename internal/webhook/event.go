package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The types of events.
const (
	TypeImagePushed  = "io.berth.image.pushed"
	TypeImagePulled  = "io.berth.image.pulled"
	TypeImageDeleted = "io.berth.image.deleted"
	TypeTagUpdated   = "io.berth.tag.updated"
	TypeTagDeleted   = "io.berth.tag.deleted"
	// TypePing is the test event an admin sends to check a webhook; it
	// matches no filter because it is sent on demand, never on an event.
	TypePing = "io.berth.webhook.ping"
)

// ContentType is the content type of a delivery's body.
const ContentType = "application/cloudevents+json; charset=utf-8"

// Filters are the values a webhook's event filter may hold.
var Filters = []string{"push", "pull", "delete", "tag"}

// FilterOf returns the filter value that selects events of eventType, ""
// for a type no filter selects (the ping, an unknown type). A tag's
// deletion is a "tag" event: "delete" is about images (manifests), whose
// deletion removes content, while a tag's only moves a name.
func FilterOf(eventType string) string {
	switch eventType {
	case TypeImagePushed:
		return "push"
	case TypeImagePulled:
		return "pull"
	case TypeImageDeleted:
		return "delete"
	case TypeTagUpdated, TypeTagDeleted:
		return "tag"
	}
	return ""
}

// Event is one registry event as webhooks send it.
type Event struct {
	// ID is unique and stable across retries (the store's event
	// sequence, e.g. "berth-<seq>"): receivers deduplicate by it.
	ID string
	// Type is one of the Type constants.
	Type string
	// Source is the URI of what the event is about, e.g.
	// "https://registry.example.com:5000/apis/image.openshift.io/v1/namespaces/<project>/imagestreams/<stream>".
	Source string
	// Subject is "project/stream:tag", or "project/stream@sha256:…" when
	// there is no tag (see Subject).
	Subject string
	// Time is when the event happened.
	Time time.Time
	Data EventData
}

// EventData is the data of an event.
type EventData struct {
	Project string `json:"project"`
	// Stream is empty for a ping.
	Stream    string `json:"stream,omitempty"`
	Tag       string `json:"tag,omitempty"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType,omitempty"`
	Size      int64  `json:"size,omitempty"`
	// Actor is who did it (a user or service account name).
	Actor string `json:"actor,omitempty"`
	// Reason is why a tag moved other than by a push (Tagged, Alias,
	// Rollback, Imported), or that pruning deleted an image (Pruned).
	Reason string `json:"reason,omitempty"`
}

// Subject returns an event's subject: "project/stream:tag", or
// "project/stream@digest" when tag is empty.
func Subject(project, stream, tag, digest string) string {
	if tag != "" {
		return project + "/" + stream + ":" + tag
	}
	return project + "/" + stream + "@" + digest
}

// cloudEvent is the structured-mode JSON form; the field order is the
// order of the attributes in the CloudEvents specification, which makes
// payloads easy to read.
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            string    `json:"time,omitempty"`
	DataContentType string    `json:"datacontenttype"`
	Data            EventData `json:"data"`
}

// Encode returns e as a CloudEvents 1.0 event in structured JSON mode.
// The time is in UTC, RFC 3339 with as many fractional digits as it has
// (up to nanoseconds); a zero Time is left out. The id, source and type
// attributes are required by CloudEvents: an event without one is an
// error.
func Encode(e Event) ([]byte, error) {
	var missing []error
	if e.ID == "" {
		missing = append(missing, errors.New("no id"))
	}
	if e.Source == "" {
		missing = append(missing, errors.New("no source"))
	}
	if e.Type == "" {
		missing = append(missing, errors.New("no type"))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("encode webhook event %q: %w", e.ID, errors.Join(missing...))
	}
	ce := cloudEvent{
		SpecVersion:     "1.0",
		ID:              e.ID,
		Source:          e.Source,
		Type:            e.Type,
		Subject:         e.Subject,
		DataContentType: "application/json",
		Data:            e.Data,
	}
	if !e.Time.IsZero() {
		ce.Time = e.Time.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(ce)
	if err != nil {
		return nil, fmt.Errorf("encode webhook event %q: %w", e.ID, err)
	}
	return b, nil
}

// Decode reads an event Encode wrote.
func Decode(b []byte) (Event, error) {
	var ce cloudEvent
	if err := json.Unmarshal(b, &ce); err != nil {
		return Event{}, fmt.Errorf("decode webhook event: %w", err)
	}
	e := Event{ID: ce.ID, Source: ce.Source, Type: ce.Type, Subject: ce.Subject, Data: ce.Data}
	if ce.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, ce.Time)
		if err != nil {
			return Event{}, fmt.Errorf("decode webhook event %q: time: %w", ce.ID, err)
		}
		e.Time = t
	}
	return e, nil
}
