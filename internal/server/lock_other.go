//go:build !unix

package server

func LockDataDir(string, bool) (func(), error) { return func() {}, nil }

func lockSetup(string, bool) (func(), error) { return func() {}, nil }
