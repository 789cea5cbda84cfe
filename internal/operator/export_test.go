package operator

// UnionConditions exposes the union for its test.
var UnionConditions = unionConditions

// Fingerprint exposes how snapshots are compared, for its test.
var Fingerprint = fingerprint
