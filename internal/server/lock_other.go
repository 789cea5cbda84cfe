//go:build !unix

package server

func lockDataDir(string, bool) (func(), error) { return func() {}, nil }

func lockSetup(string, bool) (func(), error) { return func() {}, nil }
