package store

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, dsn := range []string{
		"postgres://berth:s3cret@db:5432/berth",
		"postgres://berth:s3cr%t@db/berth",        // does not parse as a URL
		"postgresql://berth:with@at@db/berth?x=1", // an @ in the password
		"host=db user=berth password=s3cret dbname=berth",
		"host=db password='s3cret words' dbname=berth",
		"host=db PASSWORD=s3cret",
	} {
		got := Redact(dsn)
		if strings.Contains(got, "s3cr") || strings.Contains(got, "with@at") || strings.Contains(got, "words") {
			t.Errorf("Redact(%q) = %q: the password shows", dsn, got)
		}
		if !strings.Contains(got, "db") {
			t.Errorf("Redact(%q) = %q: the host is gone", dsn, got)
		}
	}
	if got := Redact("postgres://berth@db/berth"); got != "postgres://berth@db/berth" {
		t.Errorf("a DSN without a password changed: %q", got)
	}
}

func TestPoolSize(t *testing.T) {
	for _, c := range []struct {
		dsn, rest string
		n         int
	}{
		{"postgres://u@db/b?pool_max_conns=7&sslmode=disable", "postgres://u@db/b?sslmode=disable", 7},
		{"postgres://u@db/b", "postgres://u@db/b", postgresMaxConns},
		{"host=db pool_max_conns=9 dbname=b", "host=db dbname=b", 9},
	} {
		rest, n, err := poolSize(c.dsn)
		if err != nil || rest != c.rest || n != c.n {
			t.Errorf("poolSize(%q) = %q, %d, %v; want %q, %d", c.dsn, rest, n, err, c.rest, c.n)
		}
	}
	if _, _, err := poolSize("postgres://u@db/b?pool_max_conns=1"); err == nil {
		t.Error("a pool of one connection was accepted")
	}
}
