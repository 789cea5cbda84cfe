package cli

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// followMigration draws the bar a tenth at a time off a terminal, prints
// the report, and fails on what the server reports as left behind or
// stopped.
func TestFollowMigration(t *testing.T) {
	progress := func(blobs, bytes int) string {
		return `{"type":"Progress","progress":{"storage":"s3 bucket b","blobs":` + strconv.Itoa(blobs) + `,"bytes":` + strconv.Itoa(bytes) + `,"totalBlobs":4,"totalBytes":4096}}` + "\n"
	}
	for _, c := range []struct {
		name, stream string
		wantOut      []string
		wantProgress []string
		wantErr      string
	}{{
		name: "done",
		stream: progress(1, 1024) + progress(2, 1100) + progress(4, 4096) +
			`{"type":"Done","report":{"to":"pvc:x","storages":[{"name":"s3 bucket b","blobs":4,"bytes":4096,"copied":3,"copiedBytes":3000,"deduplicated":1,"emptied":true}]}}` + "\n",
		wantOut:      []string{"s3 bucket b: 3 blobs copied (2.9 KiB), 1 already in the storage in effect; emptied"},
		wantProgress: []string{" 25% |", "100% |", "4/4 blobs, 4.0 KiB/4.0 KiB  s3 bucket b"},
	}, {
		name: "same place, and in doubt",
		stream: `{"type":"Done","report":{"storages":[{"name":"s3 bucket b","blobs":2,"deduplicated":2,"samePlace":true,"emptied":true},` +
			`{"name":"pvc volume v","blobs":1,"copied":1,"copiedBytes":5,"emptied":true,"keptOldBytes":"could not be told: 503"}]}}` + "\n",
		wantOut: []string{"s3 bucket b: the same place as the storage in effect: 2 blobs' records moved, nothing copied or deleted; emptied",
			"pvc volume v: 1 blobs copied (5 B), 0 already in the storage in effect; emptied\n  its old bytes were kept: could not be told: 503"},
	}, {
		name: "dry run",
		stream: progress(4, 4096) +
			`{"type":"Done","report":{"dryRun":true,"storages":[{"name":"s3 bucket b","blobs":4,"bytes":4096}]}}` + "\n",
		wantOut: []string{"s3 bucket b: 4 blobs (4.0 KiB) would move"},
	}, {
		name: "a blob left",
		stream: `{"type":"Done","report":{"storages":[{"name":"s3 bucket b","blobs":1,"bytes":1}],` +
			`"failures":[{"storage":"s3 bucket b","digest":"sha256:aa","error":"digest mismatch"}]}}` + "\n",
		wantOut: []string{"left in s3 bucket b: sha256:aa: digest mismatch"},
		wantErr: "1 blobs could not be moved",
	}, {
		name:    "unreadable",
		stream:  `{"type":"Done","report":{"storages":[{"name":"pvc volume v","blobs":2,"bytes":2,"unreadable":"the storage could not be opened"}]}}` + "\n",
		wantOut: []string{"pvc volume v: 2 blobs (2 B) not moved"},
		wantErr: "pvc volume v could not be read",
	}, {
		name:    "stopped",
		stream:  progress(1, 1024) + `{"type":"Error","message":"the migration stopped: store down; run it again to resume"}` + "\n",
		wantErr: "run it again to resume",
	}, {
		name:    "cut off",
		stream:  progress(1, 1024),
		wantErr: "without a report",
	}, {
		name:    "nothing to do",
		stream:  `{"type":"Done","report":{"storages":null}}` + "\n",
		wantOut: []string{"nothing to migrate"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			var out, prog bytes.Buffer
			err := followMigration(strings.NewReader(c.stream), &out, &prog)
			if (err == nil) != (c.wantErr == "") || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
			for _, w := range c.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q lacks %q", out.String(), w)
				}
			}
			for _, w := range c.wantProgress {
				if !strings.Contains(prog.String(), w) {
					t.Errorf("progress %q lacks %q", prog.String(), w)
				}
			}
		})
	}
}
