// Package webhook sends registry events (push, pull, delete, tag) to the
// HTTP endpoints that project admins register, one delivery at a time.
//
// A delivery is a CloudEvents 1.0 event in structured JSON mode (Encode),
// signed with the webhook's secret key (Sign, header X-Berth-Signature),
// POSTed by a Sender through Berth's proxy-aware outbound client. The
// Sender refuses destinations in the cluster's own network unless a
// cluster admin allowed them (Destinations), both when the URL is checked
// and when the connection is opened, so that a project admin cannot use
// the registry to probe or reach internal services.
//
// What this package leaves to its caller: finding the webhooks an event
// matches (FilterOf), queueing and persisting deliveries, and scheduling
// them. The caller calls Send, records its Result, and when Result.Retry
// is set schedules the next attempt no sooner than Backoff (or
// Result.RetryAfter, whichever is later), abandoning a delivery older
// than GiveUpAfter. Because an attempt can succeed at the receiver yet
// fail here (a lost response), a receiver may see an event more than
// once: the event's ID, stable across attempts, is what it deduplicates
// by.
package webhook
