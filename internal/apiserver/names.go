package apiserver

import "regexp"

// nameComponent is the rule /v2 applies to each component of a repository
// name (the OCI Distribution Spec's), so that every project created here
// can hold repositories: lowercase letters and digits, separated by '.',
// '_', '__' or runs of '-'.
var nameComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)

// maxProjectName leaves room in the registry's 255-character limit for
// "/" and an image name.
const maxProjectName = 253

const nameRule = "lowercase letters and digits, separated by '.', '_', '__' or runs of '-'"

// validName reports whether s may name a project or a service account.
func validName(s string) bool {
	return len(s) <= maxProjectName && nameComponent.MatchString(s)
}
