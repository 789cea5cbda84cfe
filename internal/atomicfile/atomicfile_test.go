package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("one"), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("two"), 0o640, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "two" {
		t.Fatalf("content %q, %v", b, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
	// A failing prepare leaves the old file and no temporary one.
	if err := Write(path, []byte("three"), 0o600, func(*os.File) error { return errors.New("no") }); err == nil {
		t.Fatal("prepare's error was lost")
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Fatalf("content after a failed write %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d entries left, want the file alone", len(entries))
	}
}
