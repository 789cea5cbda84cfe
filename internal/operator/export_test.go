package operator

// UnionConditions exposes the union for its test.
var UnionConditions = unionConditions
