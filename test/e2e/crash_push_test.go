package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// crashPusher pushes images in a loop until its context ends.
type crashPusher struct {
	ctx     context.Context
	c       *http.Client
	base    string
	led     *crashLedger
	timeout time.Duration
	rng     *rand.Rand
	repos   []string
	shared  [][]byte
}

type crashDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// pushImage pushes a config, one to three fresh layers and maybe a shared
// base layer, then the manifest under tag. It stops at the first failure.
func (p *crashPusher) pushImage(repo, tag string) {
	var layers [][]byte
	if p.rng.IntN(2) == 0 {
		layers = append(layers, p.shared[p.rng.IntN(len(p.shared))])
	}
	for range 1 + p.rng.IntN(3) {
		// Log-uniform in [1 KiB, 2 MiB]: mostly small, some large.
		size := int(1024 * math.Pow(2, 11*p.rng.Float64()))
		layers = append(layers, crashRandomBytes(p.rng, size))
	}
	var diffIDs []string
	var descs []crashDescriptor
	for _, l := range layers {
		d := crashDigest(l)
		diffIDs = append(diffIDs, d)
		descs = append(descs, crashDescriptor{"application/vnd.oci.image.layer.v1.tar+gzip", d, int64(len(l))})
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		"config": map[string]any{"Labels": map[string]string{"tag": tag, "nonce": strconv.FormatUint(p.rng.Uint64(), 16)}},
	})
	for _, b := range append([][]byte{config}, layers...) {
		if !p.pushBlob(repo, b) {
			return
		}
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        crashDescriptor{"application/vnd.oci.image.config.v1+json", crashDigest(config), int64(len(config))},
		"layers":        descs,
		"annotations":   map[string]string{"org.opencontainers.image.ref.name": tag},
	})
	m := crashManifest{repo: repo, tag: tag, dgst: crashDigest(manifest), payload: manifest}
	p.led.tryTag(repo, tag)
	h := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	st, hdr, body, err := crashDo(p.ctx, p.c, p.timeout, "PUT", p.base+"/v2/"+repo+"/manifests/"+tag, h, manifest)
	if err != nil || st != http.StatusCreated {
		p.led.manifest(m, false)
		p.led.unexpected("PUT manifest "+repo+":"+tag, st, err, string(body))
		return
	}
	if got := hdr.Get("Docker-Content-Digest"); got != m.dgst {
		p.led.errorf("PUT manifest %s:%s: Docker-Content-Digest %q, want %s", repo, tag, got, m.dgst)
	}
	p.led.manifest(m, true)
	p.led.pushAcked(true)
}

// pushBlob uploads data to repo by a randomly chosen route and reports
// whether the server acknowledged it with a 201.
func (p *crashPusher) pushBlob(repo string, data []byte) bool {
	dgst := crashDigest(data)
	b := crashBlob{repo: repo, dgst: dgst, size: int64(len(data))}
	if p.led.hasBlob(b) && p.rng.IntN(4) != 0 {
		return true // already acknowledged here; usually skip, sometimes push again
	}
	uploads := p.base + "/v2/" + repo + "/blobs/uploads/"
	var ok bool
	switch from := p.led.holder(b, p.repos); {
	case from != "" && p.rng.IntN(2) == 0:
		ok = p.mount(uploads, b, from)
	default:
		switch p.rng.IntN(3) {
		case 0:
			ok = p.monolithic(uploads, b, data)
		case 1:
			ok = p.session(uploads, b, data, false)
		default:
			ok = p.session(uploads, b, data, true)
		}
	}
	if ok {
		p.led.ackBlob(b)
		p.led.pushAcked(false)
	} else {
		p.led.unackBlob(b)
	}
	return ok
}

func (p *crashPusher) created(what string, b crashBlob, st int, hdr http.Header, body []byte, err error) bool {
	if err != nil || st != http.StatusCreated {
		p.led.unexpected(what+" "+b.dgst+" to "+b.repo, st, err, string(body))
		return false
	}
	if got := hdr.Get("Docker-Content-Digest"); got != b.dgst {
		p.led.errorf("%s %s to %s: Docker-Content-Digest %q", what, b.dgst, b.repo, got)
	}
	return true
}

func (p *crashPusher) mount(uploads string, b crashBlob, from string) bool {
	u := uploads + "?mount=" + url.QueryEscape(b.dgst) + "&from=" + url.QueryEscape(from)
	st, hdr, body, err := crashDo(p.ctx, p.c, p.timeout, "POST", u, nil, nil)
	return p.created("mount from "+from, b, st, hdr, body, err)
}

func (p *crashPusher) monolithic(uploads string, b crashBlob, data []byte) bool {
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	st, hdr, body, err := crashDo(p.ctx, p.c, p.timeout, "POST", uploads+"?digest="+url.QueryEscape(b.dgst), h, data)
	return p.created("monolithic POST", b, st, hdr, body, err)
}

// session opens an upload session and sends data either as chunks (PATCH
// each, then an empty PUT) or in the closing PUT.
func (p *crashPusher) session(uploads string, b crashBlob, data []byte, chunked bool) bool {
	st, hdr, body, err := crashDo(p.ctx, p.c, p.timeout, "POST", uploads, nil, nil)
	if err != nil || st != http.StatusAccepted {
		p.led.unexpected("POST "+uploads, st, err, string(body))
		return false
	}
	loc, err := url.Parse(p.base)
	if err == nil {
		loc, err = loc.Parse(hdr.Get("Location"))
	}
	id := hdr.Get("Docker-Upload-UUID")
	if err != nil || id == "" || !strings.HasSuffix(loc.Path, "/"+id) {
		p.led.errorf("POST %s: Location %q, Docker-Upload-UUID %q", uploads, hdr.Get("Location"), id)
		return false
	}
	if !strings.Contains(loc.RawQuery, "_state=") {
		p.led.errorf("POST %s: Location %q is not signed", uploads, hdr.Get("Location"))
		return false
	}
	s := &crashSession{repo: b.repo, id: id, location: loc.RequestURI(), data: data, dgst: b.dgst}
	p.led.openSession(s)
	var put []byte
	if chunked {
		for off := 0; off < len(data); {
			end := min(len(data), off+64<<10+p.rng.IntN(448<<10))
			h := http.Header{
				"Content-Type":  {"application/octet-stream"},
				"Content-Range": {fmt.Sprintf("%d-%d", off, end-1)},
			}
			p.led.mu.Lock()
			s.pendingEnd = int64(end)
			p.led.mu.Unlock()
			st, hdr, body, err := crashDo(p.ctx, p.c, p.timeout, "PATCH", loc.String(), h, data[off:end])
			if err != nil || st != http.StatusAccepted {
				p.led.unexpected(fmt.Sprintf("PATCH %s %d-%d", loc, off, end-1), st, err, string(body))
				return false
			}
			if r := hdr.Get("Range"); r != fmt.Sprintf("0-%d", end-1) {
				p.led.errorf("PATCH %s %d-%d: Range %q", loc, off, end-1, r)
			}
			p.led.mu.Lock()
			s.acked = int64(end)
			p.led.mu.Unlock()
			off = end
		}
	} else {
		put = data
	}
	p.led.mu.Lock()
	s.finishing = true
	s.pendingEnd = int64(len(data))
	p.led.mu.Unlock()
	q := loc.Query()
	q.Set("digest", b.dgst)
	loc.RawQuery = q.Encode()
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	st, hdr, body, err = crashDo(p.ctx, p.c, p.timeout, "PUT", loc.String(), h, put)
	if err != nil || st != http.StatusCreated {
		p.led.unexpected("PUT "+loc.String(), st, err, string(body))
		return false
	}
	p.led.closeSession(id)
	return p.created("PUT", b, st, hdr, body, nil)
}

// crashDo sends one request with its own deadline and reads the answer.
func crashDo(ctx context.Context, c *http.Client, timeout time.Duration, method, u string, h http.Header, body []byte) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r io.Reader = http.NoBody
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading body: %w", method, u, err)
	}
	return resp.StatusCode, resp.Header, b, nil
}

func crashDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func crashRandomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}
