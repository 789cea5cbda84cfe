package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func testEvent() Event {
	return Event{
		ID:      "berth-42",
		Type:    TypeImagePushed,
		Source:  "https://registry.example.com:5000/apis/image.openshift.io/v1/namespaces/team/imagestreams/app",
		Subject: Subject("team", "app", "v1", ""),
		// Not UTC, with nanoseconds, to see both converted and kept.
		Time: time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600)),
		Data: EventData{
			Project:   "team",
			Stream:    "app",
			Tag:       "v1",
			Digest:    "sha256:" + strings.Repeat("ab", 32),
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Size:      1234,
			Actor:     "alice",
		},
	}
}

func TestEncode(t *testing.T) {
	e := testEvent()
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	want := map[string]any{
		"specversion":     "1.0",
		"id":              "berth-42",
		"source":          e.Source,
		"type":            "io.berth.image.pushed",
		"subject":         "team/app:v1",
		"time":            "2025-03-04T04:06:07.123456789Z",
		"datacontenttype": "application/json",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want)+1 {
		t.Errorf("attributes %v, want those of %v and data", got, want)
	}
	ts, err := time.Parse(time.RFC3339Nano, got["time"].(string))
	if err != nil || !ts.Equal(e.Time) {
		t.Errorf("time %v (%v), want %v", ts, err, e.Time)
	}
	data, _ := got["data"].(map[string]any)
	wantData := map[string]any{
		"project": "team", "stream": "app", "tag": "v1", "digest": e.Data.Digest,
		"mediaType": e.Data.MediaType, "size": float64(1234), "actor": "alice",
	}
	if len(data) != len(wantData) {
		t.Errorf("data %v, want %v", data, wantData)
	}
	for k, v := range wantData {
		if data[k] != v {
			t.Errorf("data.%s = %#v, want %#v", k, data[k], v)
		}
	}
	// The data decodes back into EventData as it was.
	var back struct{ Data EventData }
	if err := json.Unmarshal(b, &back); err != nil || back.Data != e.Data {
		t.Errorf("data back: %+v (%v), want %+v", back.Data, err, e.Data)
	}
}

func TestEncodeOmitsEmptyOptionalFields(t *testing.T) {
	b, err := Encode(Event{ID: "berth-1", Type: TypePing, Source: "https://r.example/", Data: EventData{Project: "team"}})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "subject"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s present: %s", k, b)
		}
	}
	data := got["data"].(map[string]any)
	if _, ok := data["digest"]; !ok || data["project"] != "team" || len(data) != 2 {
		t.Errorf("data %v, want only project and digest", data)
	}
}

func TestEncodeRequiresIDSourceAndType(t *testing.T) {
	for name, e := range map[string]Event{
		"id":     {Type: TypePing, Source: "s"},
		"source": {ID: "berth-1", Type: TypePing},
		"type":   {ID: "berth-1", Source: "s"},
	} {
		if _, err := Encode(e); err == nil || !strings.Contains(err.Error(), "no "+name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
}

func TestSubject(t *testing.T) {
	if got := Subject("p", "s", "latest", "sha256:abc"); got != "p/s:latest" {
		t.Errorf("with a tag: %q", got)
	}
	if got := Subject("p", "s", "", "sha256:abc"); got != "p/s@sha256:abc" {
		t.Errorf("without a tag: %q", got)
	}
}

func TestFilterOf(t *testing.T) {
	want := map[string]string{
		TypeImagePushed:  "push",
		TypeImagePulled:  "pull",
		TypeImageDeleted: "delete",
		TypeTagUpdated:   "tag",
		TypeTagDeleted:   "tag",
		TypePing:         "",
		"io.berth.other": "",
	}
	for typ, f := range want {
		if got := FilterOf(typ); got != f {
			t.Errorf("FilterOf(%q) = %q, want %q", typ, got, f)
		}
	}
	// Every filter value selects some type, and every type's filter is a
	// valid value.
	for _, f := range Filters {
		found := false
		for typ := range want {
			found = found || FilterOf(typ) == f
		}
		if !found {
			t.Errorf("filter %q selects no type", f)
		}
	}
}

func TestSignAndVerify(t *testing.T) {
	key := []byte("s3cret")
	body := []byte(`{"id":"berth-1"}`)
	m := hmac.New(sha256.New, key)
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	sig := Sign(key, body)
	if sig != want {
		t.Fatalf("Sign = %q, want %q", sig, want)
	}
	if !Verify(key, body, sig) {
		t.Error("Verify refuses the signature Sign made")
	}
	tampered := []byte(`{"id":"berth-2"}`)
	for name, ok := range map[string]bool{
		"tampered body":   Verify(key, tampered, sig),
		"other key":       Verify([]byte("other"), body, sig),
		"empty key":       Verify(nil, body, Sign(nil, body)),
		"no prefix":       Verify(key, body, strings.TrimPrefix(sig, "sha256=")),
		"other algorithm": Verify(key, body, "sha1="+strings.TrimPrefix(sig, "sha256=")),
		"not hex":         Verify(key, body, "sha256=zz"),
		"empty header":    Verify(key, body, ""),
		"truncated":       Verify(key, body, sig[:len(sig)-2]),
	} {
		if ok {
			t.Errorf("Verify accepts a signature with %s", name)
		}
	}
}
