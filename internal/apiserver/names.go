package apiserver

import "github.com/berth-registry/berth/internal/names"

// maxProjectName leaves room in the registry's 255-character limit for
// "/" and an image name.
const maxProjectName = 253

const nameRule = "lowercase letters and digits, separated by '.', '_', '__' or runs of '-'"

// validName reports whether s may name a project or a service account:
// the rule /v2 applies to each component of a repository name, so that
// every project created here can hold repositories.
func validName(s string) bool {
	return len(s) <= maxProjectName && names.Component(s)
}
