// Package pgtest gives tests a PostgreSQL schema of their own on the
// server named by BERTH_TEST_POSTGRES_DSN: the machine's shared database,
// never reconfigured, each test in a schema it drops when it ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// EnvDSN is the environment variable that names the test server.
const EnvDSN = "BERTH_TEST_POSTGRES_DSN"

// DSN returns a connection string whose search_path is a new, empty
// schema, dropped at the end of t. Without EnvDSN the test is skipped, or
// fails under CI (.ci/run sets it and starts the server).
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("this test needs PostgreSQL: set %s (.ci/run does)", EnvDSN)
		}
		t.Skipf("skipping: this test needs PostgreSQL; set %s (e.g. postgres://postgres@127.0.0.1:5432/test)", EnvDSN)
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "berth_test_" + hex.EncodeToString(b)
	admin := stdlib.OpenDB(*cfg)
	defer admin.Close()
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema on %s: %v", EnvDSN, err)
	}
	t.Cleanup(func() {
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		dropSchema(db, schema)
	})
	return InSchema(base, schema)
}

// InSchema returns dsn (a URL or key=value string) with its search_path
// set to schema, and its application_name too: a test finds its own
// connections in pg_stat_activity by it.
func InSchema(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		q.Set("application_name", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema + " application_name=" + schema
}

func dropSchema(db *sql.DB, schema string) {
	_, _ = db.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
}
