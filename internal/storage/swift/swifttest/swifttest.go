// Package swifttest runs a single-node OpenStack Swift for tests, from
// Debian's swift packages: memcached, an account, a container and an
// object server on one device, and a proxy with TempAuth, static large
// objects and temp URLs, every one bound to 127.0.0.1, over a temporary
// directory (one-replica rings, workers 0, mount_check off). .ci/run
// installs the packages; without them a test skips (fails under CI).
package swifttest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/internal/testtool"
)

// TempAuth's user and key, and the authentication URL's path.
const (
	User = "test:tester"
	Key  = "testing"
)

// Cluster is a running single-node Swift.
type Cluster struct {
	// AuthURL is the TempAuth URL, http://127.0.0.1:PORT/auth/v1.0.
	AuthURL string
	// Dir holds its configuration and its device.
	Dir     string
	daemons []*testtool.Daemon
}

// Limits are cluster settings below Swift's defaults (zero: the
// default). Only the proxy's own can be set: Debian's servers read
// [swift-constraints] (max_file_size) from /etc/swift/swift.conf whatever
// swift_dir says.
type Limits struct {
	MaxManifestSegments int // [filter:slo] max_manifest_segments
}

// Start runs a cluster for the life of t.
func Start(t testing.TB) *Cluster { return StartWith(t, Limits{}) }

// StartWith runs a cluster with limits for the life of t.
func StartWith(t testing.TB, limits Limits) *Cluster {
	t.Helper()
	c, err := start(t.TempDir(), limits)
	if err != nil {
		if os.IsNotExist(err) {
			testtool.Missing(t, "swift-proxy-server (Debian's swift-proxy, swift-object, swift-container, swift-account, memcached)")
		}
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// StartMain runs a cluster for a TestMain: stop it with Stop. ok is false,
// with nothing started, when Swift is not installed.
func StartMain(dir string) (*Cluster, bool, error) {
	c, err := start(dir, Limits{})
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	return c, true, err
}

func start(dir string, limits Limits) (*Cluster, error) {
	bins := map[string]string{}
	for _, tool := range []string{"memcached", "swift-ring-builder", "swift-proxy-server", "swift-account-server", "swift-container-server", "swift-object-server"} {
		p, ok := testtool.Path(tool)
		if !ok {
			return nil, os.ErrNotExist
		}
		bins[tool] = p
	}
	me := "root"
	if u, err := user.Current(); err == nil {
		me = u.Username
	}
	if err := os.MkdirAll(filepath.Join(dir, "node", "d1"), 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir}
	newDaemon := func(name string, args ...string) (*testtool.Daemon, error) {
		d, err := testtool.NewDaemon(name, bins[name], func(string) []string { return args })
		if err == nil {
			c.daemons = append(c.daemons, d)
		}
		return d, err
	}
	// Ports first: the configurations name them.
	mc, err := testtool.NewDaemon("memcached", bins["memcached"], func(addr string) []string {
		_, port, _ := net.SplitHostPort(addr)
		return []string{"-u", me, "-l", "127.0.0.1", "-p", port, "-U", "0"}
	})
	if err != nil {
		return nil, err
	}
	c.daemons = append(c.daemons, mc)
	conf := func(name string) string { return filepath.Join(dir, name+".conf") }
	write := func(name, body string) error { return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600) }
	swiftConf := "[swift-hash]\nswift_hash_path_suffix = berth\nswift_hash_path_prefix = berth\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n"
	sloLimits := ""
	if limits.MaxManifestSegments > 0 {
		sloLimits = fmt.Sprintf("max_manifest_segments = %d\n", limits.MaxManifestSegments)
	}
	if err := write("swift.conf", swiftConf); err != nil {
		return nil, err
	}
	for _, kind := range []string{"account", "container", "object"} {
		d, err := newDaemon("swift-"+kind+"-server", conf(kind+"-server"))
		if err != nil {
			return nil, err
		}
		port := portOf(d.Addr)
		builder := filepath.Join(dir, kind+".builder")
		for _, args := range [][]string{{builder, "create", "6", "1", "1"}, {builder, "add", "r1z1-127.0.0.1:" + port + "/d1", "100"}, {builder, "rebalance"}} {
			if out, err := exec.Command(bins["swift-ring-builder"], args...).CombinedOutput(); err != nil && args[1] != "rebalance" {
				return nil, fmt.Errorf("swift-ring-builder %v: %v: %s", args[1:], err, out)
			}
		}
		if err := write(kind+"-server.conf", fmt.Sprintf(`[DEFAULT]
bind_ip = 127.0.0.1
bind_port = %s
workers = 0
devices = %s
mount_check = false
swift_dir = %s
user = %s

[pipeline:main]
pipeline = %s-server

[app:%s-server]
use = egg:swift#%s
`, port, filepath.Join(dir, "node"), dir, me, kind, kind, kind)); err != nil {
			return nil, err
		}
	}
	proxy, err := newDaemon("swift-proxy-server", conf("proxy-server"))
	if err != nil {
		return nil, err
	}
	// The middlewares in the order Swift's documentation gives: copy
	// before slo, so that a copy of a manifest is its content.
	if err := write("proxy-server.conf", fmt.Sprintf(`[DEFAULT]
bind_ip = 127.0.0.1
bind_port = %s
workers = 0
swift_dir = %s
user = %s

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats tempurl tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = %s .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = %s

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:tempurl]
use = egg:swift#tempurl

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo
%s
[filter:dlo]
use = egg:swift#dlo
`, portOf(proxy.Addr), dir, me, Key, mc.Addr, sloLimits)); err != nil {
		return nil, err
	}
	c.AuthURL = "http://" + proxy.Addr + "/auth/v1.0"
	return c, c.startAll()
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func (c *Cluster) startAll() error {
	for _, d := range c.daemons {
		if err := d.Start(); err != nil {
			c.Stop()
			return err
		}
	}
	return nil
}

// Stop kills every server (the device's objects stay in Dir).
func (c *Cluster) Stop() {
	for i := len(c.daemons) - 1; i >= 0; i-- {
		c.daemons[i].Stop()
	}
}

// Restart starts a stopped cluster again on the same ports and device.
func (c *Cluster) Restart() error {
	c.Stop()
	return c.startAll()
}

// Container is a fresh container name (not created: the driver creates
// it).
func Container() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "berth-test-" + hex.EncodeToString(b)
}

// Settings are the storage settings of container on c, as
// spec.storage.swift.
func (c *Cluster) Settings(container string) map[string]any {
	return map[string]any{"authURL": c.AuthURL, "authVersion": "1", "container": container}
}

// Credentials are TempAuth's user and key, by the user secret's keys.
func Credentials() map[string]string {
	return map[string]string{"REGISTRY_STORAGE_SWIFT_USERNAME": User, "REGISTRY_STORAGE_SWIFT_PASSWORD": Key}
}
