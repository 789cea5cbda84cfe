package imagestream

import (
	"slices"
	"testing"
)

// A repository import under a cap takes latest, then full versions
// newest first, then minor versions newest first, then the rest by name
// (the reference's PrioritizeTags); duplicates and an empty tag collapse.
func TestPrioritizeTags(t *testing.T) {
	got := PrioritizeTags([]string{"edge", "v1.2.3", "1.10", "latest", "1.2", "v1.10.0", "", "alpha", "2.0.0-rc1", "1.2"})
	want := []string{"latest", "2.0.0-rc1", "v1.10.0", "v1.2.3", "1.10", "1.2", "alpha", "edge"}
	if !slices.Equal(got, want) {
		t.Fatalf("PrioritizeTags = %v, want %v", got, want)
	}
}
