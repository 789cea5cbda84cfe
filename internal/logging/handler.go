// Package logging builds Berth's log handlers and keeps the recent lines a
// process wrote in memory, so that the management API can serve them as a
// pod's log (`berth logs deployments/image-registry`).
//
// Every handler here reads its level from a *slog.LevelVar at each record:
// whoever holds the LevelVar (the operator, as the registry Config's
// logLevel changes) changes what is logged without a restart.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Formats are the values of --log-format: logfmt (the reference
// registry's shape: time=… level=info msg="…"), text (the same; the name
// earlier versions used) and json.
var Formats = []string{"logfmt", "text", "json"}

// ParseLevel returns a LevelVar set to level (debug, info, warn, error, as
// slog names them, in any case).
func ParseLevel(level string) (*slog.LevelVar, error) {
	v := new(slog.LevelVar)
	if err := v.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	return v, nil
}

// NewHandler returns a handler writing format to w, enabled at level as it
// is when each record is logged. A nil level is info.
//
// logfmt writes one line per record: the time in RFC 3339 UTC to the
// second, the level in lower case, then msg and the attributes, as the
// reference registry's log does. json is slog's JSON.
func NewHandler(w io.Writer, format string, level slog.Leveler) (slog.Handler, error) {
	if level == nil {
		level = slog.LevelInfo
	}
	switch format {
	case "logfmt", "text":
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: logfmtAttr}), nil
	case "json":
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}), nil
	default:
		return nil, fmt.Errorf("log format must be one of %s, not %q", strings.Join(Formats, ", "), format)
	}
}

// logfmtAttr writes the built-in time and level as the reference does.
func logfmtAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		if t, ok := a.Value.Any().(time.Time); ok {
			return slog.String(slog.TimeKey, t.UTC().Format(time.RFC3339))
		}
	case slog.LevelKey:
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.String(slog.LevelKey, strings.ToLower(l.String()))
		}
	}
	return a
}

// WithTrailer returns a handler that adds attrs at the end of every record
// h handles (the reference ends each line with instance.id=…); slog's
// WithAttrs would put them before the record's own. It asks h whether a
// level is enabled at each record, so h's level stays live.
func WithTrailer(h slog.Handler, attrs ...slog.Attr) slog.Handler {
	return trailer{next: h, attrs: attrs}
}

type trailer struct {
	next  slog.Handler
	attrs []slog.Attr
}

func (t trailer) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t trailer) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone() // the caller's record shares its attribute storage
	r.AddAttrs(t.attrs...)
	return t.next.Handle(ctx, r)
}

func (t trailer) WithAttrs(attrs []slog.Attr) slog.Handler {
	return trailer{next: t.next.WithAttrs(attrs), attrs: t.attrs}
}

// WithGroup puts the trailer inside the group too: Berth's loggers use no
// groups, and a handler cannot add a top-level attribute after one.
func (t trailer) WithGroup(name string) slog.Handler {
	return trailer{next: t.next.WithGroup(name), attrs: t.attrs}
}

// WithLevel passes the records of one component (the operator) at its
// own level, whatever the process's level: the reference keeps the
// operator's verbosity (operatorLogLevel) apart from the registry's.
// The handlers of this package write what they are handed, so deciding
// here is enough.
func WithLevel(h slog.Handler, level slog.Leveler) slog.Handler {
	return leveled{next: h, level: level}
}

type leveled struct {
	next  slog.Handler
	level slog.Leveler
}

func (l leveled) Enabled(_ context.Context, lv slog.Level) bool   { return lv >= l.level.Level() }
func (l leveled) Handle(ctx context.Context, r slog.Record) error { return l.next.Handle(ctx, r) }
func (l leveled) WithAttrs(as []slog.Attr) slog.Handler {
	return leveled{next: l.next.WithAttrs(as), level: l.level}
}
func (l leveled) WithGroup(name string) slog.Handler {
	return leveled{next: l.next.WithGroup(name), level: l.level}
}
