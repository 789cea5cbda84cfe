//go:build !linux

package memory

import "errors"

func newMemfd() (content, error) { return nil, errors.New("memfd: Linux only") }
