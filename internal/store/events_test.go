package store

import "testing"

// Each kind says what it changes; a kind that changes nothing a cache or
// a watch follows says so too.
func TestEventKinds(t *testing.T) {
	for _, c := range []struct {
		kind                            EventKind
		removes, access, tags, isStream bool
	}{
		{EventProjectCreated, false, true, false, false},
		{EventProjectDeleted, true, true, false, false},
		{EventUserCreated, false, true, false, false},
		{EventUserDeleted, false, true, false, false},
		{EventRepositoryCreated, false, false, false, true},
		{EventRepositoryDeleted, true, false, false, true},
		{EventBlobLinked, false, false, false, false},
		{EventBlobUnlinked, true, false, false, false},
		{EventManifestPushed, false, false, false, true},
		{EventManifestDeleted, true, false, false, true},
		{EventTagUpdated, false, false, true, true},
		{EventTagDeleted, false, false, true, true},
		{EventKind("SomethingElse"), false, false, false, false},
	} {
		if c.kind.Removes() != c.removes || c.kind.ChangesAccess() != c.access || c.kind.ChangesTags() != c.tags || c.kind.ChangesStream() != c.isStream {
			t.Errorf("%s: removes %t, access %t, tags %t, stream %t", c.kind, c.kind.Removes(), c.kind.ChangesAccess(), c.kind.ChangesTags(), c.kind.ChangesStream())
		}
	}
}
