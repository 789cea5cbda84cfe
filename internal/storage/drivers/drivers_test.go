package drivers_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/azure/azuretest"
	"github.com/berth-registry/berth/internal/storage/drivers"
	"github.com/berth-registry/berth/internal/storage/gcs"
	"github.com/berth-registry/berth/internal/storage/gcs/gcstest"
	"github.com/berth-registry/berth/internal/storage/s3/s3test"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/storage/swift/swifttest"
)

// Every driver of the table passes the suite when built the way the
// server builds it: by name, with options. The filesystem driver runs
// with its default place (the data directory's blob store) and with a
// volume's own root.
func TestEveryDriverThroughTheTable(t *testing.T) {
	table := drivers.Builtin()
	dataDir := func(t *testing.T) storage.Options { return storage.Options{DataDir: t.TempDir()} }
	cases := []struct {
		name, driver string
		opts         func(t *testing.T) storage.Options
	}{
		{"memory", "memory", dataDir},
		{"filesystem", "filesystem", dataDir},
		{"filesystem volume", "filesystem", func(t *testing.T) storage.Options {
			return storage.Options{DataDir: t.TempDir(), Root: filepath.Join(t.TempDir(), "volumes", "v")}
		}},
	}
	// The S3 driver's settings name a gateway started for its case alone,
	// so that the others run without versitygw.
	var gw *s3test.Gateway
	cases = append(cases, struct {
		name, driver string
		opts         func(t *testing.T) storage.Options
	}{"s3", "s3", func(t *testing.T) storage.Options {
		raw, err := json.Marshal(gw.Settings(s3test.Bucket()))
		if err != nil {
			t.Fatal(err)
		}
		return storage.Options{DataDir: t.TempDir(), Settings: raw, Credentials: s3test.Credentials()}
	}})
	var emulator *gcstest.Emulator
	cases = append(cases, struct {
		name, driver string
		opts         func(t *testing.T) storage.Options
	}{"gcs", "gcs", func(t *testing.T) storage.Options {
		raw, err := json.Marshal(gcstest.Settings(gcstest.Bucket()))
		if err != nil {
			t.Fatal(err)
		}
		keyFile, _ := gcstest.KeyFile(t)
		return storage.Options{DataDir: t.TempDir(), Settings: raw, Credentials: map[string]string{gcs.KeyFileKey: string(keyFile)}}
	}})
	cases = append(cases, struct {
		name, driver string
		opts         func(t *testing.T) storage.Options
	}{"azure", "azure", func(t *testing.T) storage.Options {
		raw, err := json.Marshal(azuretest.Settings(azuretest.Container()))
		if err != nil {
			t.Fatal(err)
		}
		return storage.Options{DataDir: t.TempDir(), Settings: raw, Credentials: azuretest.Credentials()}
	}})
	var sw *swifttest.Cluster
	cases = append(cases, struct {
		name, driver string
		opts         func(t *testing.T) storage.Options
	}{"swift", "swift", func(t *testing.T) storage.Options {
		raw, err := json.Marshal(sw.Settings(swifttest.Container()))
		if err != nil {
			t.Fatal(err)
		}
		return storage.Options{DataDir: t.TempDir(), Settings: raw, Credentials: swifttest.Credentials()}
	}})
	if len(table) != 6 {
		t.Errorf("the table has %v: add a case for each new driver", table.Names())
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			switch c.driver {
			case "s3":
				gw = s3test.Start(t)
			case "swift":
				sw = swifttest.Start(t)
			case "azure":
				t.Setenv(azuretest.ServiceURLVar, azuretest.Start(t).ServiceURL)
			case "gcs":
				emulator = gcstest.Start(t)
				t.Setenv(gcstest.EmulatorHostVar, emulator.Host)
			}
			storagetest.Run(t, func(t *testing.T) storage.Driver {
				o := c.opts(t)
				d, err := table.New(context.Background(), c.driver, o)
				if err != nil {
					t.Fatal(err)
				}
				if o.Root != "" {
					if _, err := os.Stat(filepath.Join(o.Root, "blobs")); err != nil {
						t.Fatalf("the driver does not keep its files at its root: %v", err)
					}
				}
				return d
			})
		})
	}
}
