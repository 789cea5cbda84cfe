package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Media types used by the hand-built test images.
const (
	mtOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex    = "application/vnd.oci.image.index.v1+json"
	mtOCIConfig   = "application/vnd.oci.image.config.v1+json"
	mtOCILayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// ociDescriptor is the subset of an OCI descriptor the tests need.
type ociDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// ociManifest is the subset of an OCI image manifest the tests need.
type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	ArtifactType  string          `json:"artifactType,omitempty"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
	Subject       *ociDescriptor  `json:"subject,omitempty"`
}

// ociIndex is the subset of an OCI image index the tests need.
type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

// testImage is a one-layer linux/amd64 image written as an OCI image layout.
type testImage struct {
	Layout         string // directory holding oci-layout, index.json and blobs/
	Tag            string // the ref name recorded in index.json
	FileName       string // the one file in the layer (no leading slash)
	FileContent    []byte
	Layer          []byte // gzip tar
	LayerDigest    string
	DiffID         string // sha256 of the uncompressed tar
	Config         []byte
	ConfigDigest   string
	Manifest       []byte
	ManifestDigest string
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tarGz returns a gzip-compressed tar holding one regular file, and the
// digest of the uncompressed tar (the diff ID). The output is deterministic.
func tarGz(t testing.TB, name string, content []byte) (gz []byte, diffID string) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	hdr := &tar.Header{
		Name:     name,
		Mode:     0o644,
		Size:     int64(len(content)),
		ModTime:  time.Unix(1700000000, 0),
		Typeflag: tar.TypeReg,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gb.Bytes(), sha256Digest(tb.Bytes())
}

// writeBlob stores b under layout/blobs/sha256/<hex> and returns its digest.
func writeBlob(t testing.TB, layout string, b []byte) string {
	t.Helper()
	d := sha256Digest(b)
	dir := filepath.Join(layout, "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, d[len("sha256:"):]), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newTestImage writes a fresh OCI image layout in a temp dir: one gzip tar
// layer holding fileName with content, a linux/amd64 config, an OCI
// manifest, and index.json naming the manifest tag.
func newTestImage(t testing.TB, tag, fileName string, content []byte) *testImage {
	t.Helper()
	img := &testImage{Layout: filepath.Join(t.TempDir(), "layout"), Tag: tag, FileName: fileName, FileContent: content}
	if err := os.MkdirAll(img.Layout, 0o755); err != nil {
		t.Fatal(err)
	}
	img.Layer, img.DiffID = tarGz(t, fileName, content)
	img.LayerDigest = writeBlob(t, img.Layout, img.Layer)

	img.Config = mustJSON(t, map[string]any{
		"created":      "2023-11-14T22:13:20Z",
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{img.DiffID}},
		"history":      []map[string]any{{"created": "2023-11-14T22:13:20Z", "created_by": "berth e2e test image"}},
	})
	img.ConfigDigest = writeBlob(t, img.Layout, img.Config)

	img.Manifest = mustJSON(t, ociManifest{
		SchemaVersion: 2,
		MediaType:     mtOCIManifest,
		Config:        ociDescriptor{MediaType: mtOCIConfig, Digest: img.ConfigDigest, Size: int64(len(img.Config))},
		Layers:        []ociDescriptor{{MediaType: mtOCILayerGz, Digest: img.LayerDigest, Size: int64(len(img.Layer))}},
	})
	img.ManifestDigest = writeBlob(t, img.Layout, img.Manifest)

	index := mustJSON(t, ociIndex{
		SchemaVersion: 2,
		MediaType:     mtOCIIndex,
		Manifests: []ociDescriptor{{
			MediaType:   mtOCIManifest,
			Digest:      img.ManifestDigest,
			Size:        int64(len(img.Manifest)),
			Annotations: map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	})
	if err := os.WriteFile(filepath.Join(img.Layout, "index.json"), index, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img.Layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// OCIRef is the containers-image transport reference of the layout.
func (img *testImage) OCIRef() string { return "oci:" + img.Layout + ":" + img.Tag }
