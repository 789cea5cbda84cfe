package s3

import "testing"

// TestPartSizes: parts double every 1,000, so that a 100 GiB+ layer fits
// in S3's 10,000 parts even at the smallest chunk size, and none is larger
// than S3's 5 GiB.
func TestPartSizes(t *testing.T) {
	for _, tc := range []struct {
		chunkMiB int64
		atLeast  int64
	}{{5, 100 << 30}, {10, 9 << 40}, {5120, 40 << 40}} {
		st := uploadState{PartSize: tc.chunkMiB * mib, Next: maxParts + 1}
		if got := st.partsSize(); got < tc.atLeast {
			t.Errorf("chunk %d MiB: 10,000 parts hold %d GiB, want at least %d GiB", tc.chunkMiB, got>>30, tc.atLeast>>30)
		}
		var sum int64
		for n := int32(1); n <= maxParts; n++ {
			size := st.partSizeOf(n)
			if size < 5*mib || size > maxPartSize {
				t.Fatalf("chunk %d MiB: part %d is %d bytes", tc.chunkMiB, n, size)
			}
			if n > 1 && size < st.partSizeOf(n-1) {
				t.Fatalf("chunk %d MiB: part %d is smaller than the one before", tc.chunkMiB, n)
			}
			sum += size
			if (uploadState{PartSize: st.PartSize, Next: n + 1}).partsSize() != sum {
				t.Fatalf("chunk %d MiB: partsSize before part %d disagrees with the sum of the sizes", tc.chunkMiB, n+1)
			}
		}
	}
	if _, err := decodeState([]byte(`{"p":1,"n":1}`), 10*mib); err == nil {
		t.Error("a state with a part size under 5 MiB was accepted")
	}
}
