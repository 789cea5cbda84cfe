package s3_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/testtool"
)

func testtoolMissing(t *testing.T) { testtool.Missing(t, "versitygw") }
