package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "berth.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cmd := newServeCommand()
	f := cmd.Flags()
	if err := f.Parse([]string{"--listen", "127.0.0.1:7000"}); err != nil {
		t.Fatal(err)
	}
	path := write(`
listen: ":9999"          # the command line wins
htpasswd: /etc/berth/users
login-attempts: 7
login-lockout: 2m
insecure-http: true
tls-host: [registry.example, 10.0.0.5]
metrics-secret: s3cret-for-the-scraper
`)
	if err := applyServeConfig(f, path); err != nil {
		t.Fatal(err)
	}
	str := func(name string) string { v, _ := f.GetString(name); return v }
	attempts, _ := f.GetInt("login-attempts")
	lockout, _ := f.GetDuration("login-lockout")
	insecure, _ := f.GetBool("insecure-http")
	hosts, _ := f.GetStringSlice("tls-host")
	if str("listen") != "127.0.0.1:7000" || str("htpasswd") != "/etc/berth/users" || attempts != 7 ||
		lockout != 2*time.Minute || !insecure || strings.Join(hosts, ",") != "registry.example,10.0.0.5" ||
		str("metrics-secret") != "s3cret-for-the-scraper" {
		t.Fatalf("after the config file: listen %q htpasswd %q attempts %d lockout %v insecure %v hosts %v",
			str("listen"), str("htpasswd"), attempts, lockout, insecure, hosts)
	}

	for content, want := range map[string]string{
		"htpasswdd: /x\n":        `unknown setting "htpasswdd"`,
		"login-lockout: soon\n":  "login-lockout",
		"config: other.yaml\n":   `unknown setting "config"`,
		"listen: [unclosed\n":    "berth.yaml",
		"login-attempts: many\n": "login-attempts",
	} {
		err := applyServeConfig(newServeCommand().Flags(), write(content))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: err %v, want it to mention %q", content, err, want)
		}
	}
}

func TestParseEmptyDirLimit(t *testing.T) {
	for in, want := range map[string]int64{"512Mi": 512 << 20, "4Gi": 4 << 30, "1000": 1000, "1G": 1e9, "0": -1} {
		if got, err := parseEmptyDirLimit(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1Gi", "lots", "1.5", ""} {
		if got, err := parseEmptyDirLimit(in); err == nil {
			t.Errorf("%q: %d, want an error", in, got)
		}
	}
}
