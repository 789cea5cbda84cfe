package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/berth-registry/berth/internal/bench"
)

func runBench(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"bench"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestBenchCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()

	out, err := runBench(t, "--url", srv.URL, "-c", "2", "-n", "3", "--workloads", "manifest-get,catalog", "--catalog-repos", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if rep.Concurrency != 2 || rep.Requests != 3 || len(rep.Results) != 2 || rep.Results[1].Workload != "catalog" || rep.Results[1].Completed != 3 {
		t.Fatalf("unexpected report: %+v", rep)
	}

	out, err = runBench(t, "--url", srv.URL, "-n", "2", "--workloads", "manifest-get", "-o", "text")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "manifest-get") || !strings.Contains(out, "P99") {
		t.Errorf("text output:\n%s", out)
	}

	for _, args := range [][]string{
		{"-n", "2"}, // no --url
		{"--url", srv.URL, "--workloads", "nope"},
		{"--url", srv.URL, "-o", "yaml"},
		{"--url", srv.URL, "--password", "x"},
	} {
		if _, err := runBench(t, args...); err == nil {
			t.Errorf("bench %v succeeded", args)
		}
	}
}
