package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// WriteJSON writes rep as indented JSON.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// TextHeader writes the heading of the human-readable table; TextRow
// writes one row, so rows can appear as workloads finish.
func TextHeader(w io.Writer, url string, concurrency, requests int) {
	fmt.Fprintf(w, "registry %s, concurrency %d, %d requests per workload (MB = MiB)\n\n", url, concurrency, requests)
	fmt.Fprintf(w, "%-16s %6s %5s %8s %9s %9s %9s %9s %9s %s\n",
		"WORKLOAD", "DONE", "ERR", "TIME", "REQ/S", "MB/S", "P50", "P90", "P99", "SERVER")
}

// TextRow writes res as a row of the table, and its first error below it.
func TextRow(w io.Writer, res Result) {
	if res.SetupError != "" {
		fmt.Fprintf(w, "%-16s setup failed: %s\n", res.Workload, res.SetupError)
		return
	}
	mbs := "-"
	if res.BlobSize > 0 {
		mbs = strconv.FormatFloat(res.MBPerSec, 'f', 1, 64)
	}
	server := ""
	if s := res.Server; s != nil {
		server = fmt.Sprintf("cpu %.2fs", s.CPUSeconds)
		if s.CPUSecondsPerMB > 0 {
			server += fmt.Sprintf(" (%.4fs/MB)", s.CPUSecondsPerMB)
		}
		server += fmt.Sprintf(" peak rss %.0f MiB", float64(s.PeakRSSBytes)/MiB)
	}
	done := strconv.Itoa(res.Completed)
	if res.TimedOut {
		done += "*"
	}
	fmt.Fprintf(w, "%-16s %6s %5d %7.2fs %9.1f %9s %9s %9s %9s %s\n",
		res.Workload, done, res.Errors, res.ElapsedSeconds, res.ReqPerSec, mbs,
		fmtMillis(res.LatencyMillis.P50), fmtMillis(res.LatencyMillis.P90), fmtMillis(res.LatencyMillis.P99), server)
	if res.FirstError != "" {
		fmt.Fprintf(w, "%-16s first error: %s\n", "", res.FirstError)
	}
}

// TextFooter explains marks the rows may carry.
func TextFooter(w io.Writer, rep *Report) {
	for _, r := range rep.Results {
		if r.TimedOut {
			fmt.Fprintln(w, "\n* stopped at the timeout before all requests were made")
			break
		}
	}
}

// WriteText writes rep as the human-readable table.
func WriteText(w io.Writer, rep *Report) {
	TextHeader(w, rep.URL, rep.Concurrency, rep.Requests)
	for _, r := range rep.Results {
		TextRow(w, r)
	}
	TextFooter(w, rep)
}

func fmtMillis(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	case v < 10000:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(v/1000, 'f', 1, 64) + "s"
}
