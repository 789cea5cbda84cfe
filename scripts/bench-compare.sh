#!/usr/bin/env bash
# bench-compare.sh: run `berth bench` (zb's workloads) against Berth and
# CNCF Distribution 2.8.2 side by side on this machine and write the
# comparison to docs/BENCHMARKS.md.
#
# Both servers listen on 127.0.0.1 only, over plain HTTP, with filesystem
# storage in fresh directories on the same disk and warn-level logs. Each
# workload runs against Berth, then Distribution, with the same -c and -n,
# after a `sync` and a drop of the page cache (as root); `berth bench --server-pid` reads each server's CPU time
# from /proc around the measured phase, and VmHWM gives peak RSS.
#
# Needs: go, jq, curl, and Debian's docker-registry (apt-get install
# docker-registry). Takes about 5 minutes with the defaults on 2 cores and
# writes about 30 GB (removed at exit).
#
# Settings (environment):
#   BENCH_C           workers (-c), default 4
#   BENCH_N           requests for every workload, instead of the table in default_n
#   BENCH_SCALE       factor on the default_n table (e.g. 0.1 for a quick look), default 1
#   BENCH_TIMEOUT     limit on each measured phase, default 120s
#   BENCH_WORKLOADS   comma-separated workloads, default all
#   BENCH_TMPDIR      where the servers keep data (a disk, not tmpfs), default $TMPDIR or /tmp
#   BENCH_OUT         report path, default docs/BENCHMARKS.md
#   BENCH_KEEP=1      keep the temporary directory (data, logs, raw JSON)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

C=${BENCH_C:-4}
SCALE=${BENCH_SCALE:-1}
TIMEOUT=${BENCH_TIMEOUT:-120s}
WORKLOADS=${BENCH_WORKLOADS:-push-mono-1m,push-mono-10m,push-mono-100m,push-chunk-1m,push-chunk-10m,push-chunk-100m,pull-1m,pull-10m,pull-100m,manifest-get,catalog,mixed-1m,mixed-10m,mixed-100m}
OUT=${BENCH_OUT:-$ROOT/docs/BENCHMARKS.md}
DISTRIBUTION=${BENCH_DISTRIBUTION:-/usr/bin/docker-registry}

for tool in go jq curl; do
	command -v "$tool" >/dev/null || { echo "bench-compare: $tool is required" >&2; exit 2; }
done
[ -x "$DISTRIBUTION" ] || { echo "bench-compare: $DISTRIBUTION not found; apt-get install docker-registry" >&2; exit 2; }

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/berth-bench.XXXXXX")
BERTH_PID= DIST_PID=
cleanup() {
	local pid
	for pid in $BERTH_PID $DIST_PID; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $BERTH_PID $DIST_PID; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench-compare: kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ME=bench-compare
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

log "building berth"
BIN=$WORK/berth
go build -o "$BIN" ./cmd/berth

mkdir -p "$WORK/berth-data" "$WORK/dist-data" "$WORK/results"
BERTH_PORT=$(free_port)
DIST_PORT=$(free_port)
while [ "$DIST_PORT" = "$BERTH_PORT" ]; do DIST_PORT=$(free_port); done
BERTH_URL=http://127.0.0.1:$BERTH_PORT
DIST_URL=http://127.0.0.1:$DIST_PORT

dist_config "$DIST_PORT"

log "starting berth on $BERTH_URL and distribution on $DIST_URL (data in $WORK)"
ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
BERTH_ADMIN_PASSWORD=$ADMIN_PASSWORD \
	"$BIN" serve --listen "127.0.0.1:$BERTH_PORT" --data "$WORK/berth-data" --insecure-http --log-level warn >"$WORK/berth.log" 2>&1 &
BERTH_PID=$!
env -u AWS_CA_BUNDLE "$DISTRIBUTION" serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
DIST_PID=$!
wait_ready "$BERTH_URL" "$BERTH_PID" berth
wait_ready "$DIST_URL" "$DIST_PID" dist
# Berth runs as it ships, with authentication and authorization on every
# request: the benchmark sends a registry token, as podman does after login.
BERTH_TOKEN=$(curl -sf -u "admin:$ADMIN_PASSWORD" "$BERTH_URL/openshift/token" | jq -r .token)
case $BERTH_TOKEN in sha256~*) ;; *) echo "bench-compare: no token from berth" >&2; exit 1 ;; esac

# The loopback limit of the pull targets is one raw TCP stream, best of
# three (what "loopback TCP ≈ 4 GB/s" means); $C streams are shown too.
log "measuring loopback (1 and $C streams, best of 3)"
"$BIN" bench loopback -c 1 --duration 1s --trials 3 --json >"$WORK/loopback.json"
"$BIN" bench loopback -c "$C" --duration 1s --trials 3 --json >"$WORK/loopback-c.json"

# default_n is each workload's request count: enough for several seconds
# per run on 2 cores (pulls and metadata GETs are fast, so they get more).
default_n() {
	case $1 in
	push-*-1m) echo 1000 ;;
	push-*-10m) echo 200 ;;
	push-*-100m) echo 30 ;;
	pull-1m) echo 4000 ;;
	pull-10m) echo 800 ;;
	pull-100m) echo 120 ;;
	mixed-1m) echo 2000 ;;
	mixed-10m) echo 400 ;;
	mixed-100m) echo 60 ;;
	manifest-get) echo 20000 ;;
	*) echo 10000 ;;
	esac
}
requests_for() {
	if [ -n "${BENCH_N:-}" ]; then
		echo "$BENCH_N"
	else
		n_of "$(default_n "$1")"
	fi
}

# CPU accounting, to tell how much else ran on the machine meanwhile:
# busy ticks of the whole machine, each server's ticks, and the CPU time
# of this shell's finished children (the benchmark runs, in centiseconds).
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
machine_steal() { awk '/^cpu / {print $9; exit}' /proc/stat; }
proc_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
children_cs() {
	times >"$WORK/times"
	awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }; printf "%d", t * 100 }' "$WORK/times"
}
# Idle check: what the machine does without us, over 2 seconds.
I0=$(machine_busy) IB0=$(proc_ticks "$BERTH_PID") ID0=$(proc_ticks "$DIST_PID")
sleep 2
IDLE_OTHER=$(awk -v b=$(($(machine_busy) - I0)) -v s=$(($(proc_ticks "$BERTH_PID") - IB0 + $(proc_ticks "$DIST_PID") - ID0)) \
	'BEGIN { printf "%d", (b - s) / 2 }') # percent of one core
if [ "$IDLE_OTHER" -gt 10 ]; then
	log "warning: other processes use ${IDLE_OTHER}% of a core before the run; they will skew the figures"
fi
BUSY0=$(machine_busy) STEAL0=$(machine_steal) CHILD0=$(children_cs)
BT0=$(proc_ticks "$BERTH_PID") DT0=$(proc_ticks "$DIST_PID")

START=$(date +%s)
IFS=, read -ra WL <<<"$WORKLOADS"
i=0
for w in "${WL[@]}"; do
	i=$((i + 1))
	n=$(requests_for "$w")
	for side in berth dist; do
		if [ $side = berth ]; then
			url=$BERTH_URL pid=$BERTH_PID creds=(--username token --password-env)
		else
			url=$DIST_URL pid=$DIST_PID creds=()
		fi
		settle
		BERTH_BENCH_PASSWORD=$BERTH_TOKEN "$BIN" bench --url "$url" "${creds[@]}" --workloads "$w" -c "$C" -n "$n" --timeout "$TIMEOUT" \
			--server-pid "$pid" --no-progress --json >"$WORK/results/$side-$w.json" 2>"$WORK/results/$side-$w.err" || true
		if ! jq -e '.results[0]' "$WORK/results/$side-$w.json" >/dev/null 2>&1; then
			echo "bench-compare: $w on $side produced no result:" >&2
			cat "$WORK/results/$side-$w.err" >&2
			exit 1
		fi
		log "[$i/${#WL[@]}] $w on $side: $(jq -r '.results[0] | "\(.completed)/\(.requested) ok, \(.errors) errors, \(.req_per_s) req/s, \(.mb_per_s) MB/s, p99 \(.latency_ms.p99) ms, server cpu \(.server.cpu_s // "?") s"' "$WORK/results/$side-$w.json")"
	done
done
ELAPSED=$(($(date +%s) - START))
BUSY1=$(machine_busy) STEAL1=$(machine_steal) CHILD1=$(children_cs)
BT1=$(proc_ticks "$BERTH_PID") DT1=$(proc_ticks "$DIST_PID")
# Centiseconds: ticks are USER_HZ, 100 a second.
OTHER_CPU=$(awk -v b=$((BUSY1 - BUSY0)) -v s=$((BT1 - BT0 + DT1 - DT0)) -v c=$((CHILD1 - CHILD0)) 'BEGIN { o = (b - s - c) / 100; printf "%.1f", (o < 0 ? 0 : o) }')
STEAL_CPU=$(awk -v s=$((STEAL1 - STEAL0)) 'BEGIN { printf "%.1f", s / 100 }')
AVAIL_CPU=$((ELAPSED * $(nproc)))

hwm() { awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$1/status"; }
BERTH_HWM=$(hwm "$BERTH_PID")
DIST_HWM=$(hwm "$DIST_PID")

# Machine facts.
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
FS=$(df -T "$WORK" | awk 'NR == 2 {print $2 " on " $1}')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no -- . ':!docs/BENCHMARKS.md' 2>/dev/null)" ]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
DIST_VERSION=$("$DISTRIBUTION" --version 2>/dev/null | awk '{print $NF}')

# Reproduce command: the defaults, or the settings this run was given.
REPRO="scripts/bench-compare.sh"
for v in BENCH_C BENCH_N BENCH_SCALE BENCH_TIMEOUT BENCH_WORKLOADS; do
	if [ -n "${!v:-}" ]; then REPRO="$v=${!v} $REPRO"; fi
done

# Keep a hand-written analysis between the NOTES markers across runs.
NOTES="" SCALING="" LIMITER="" S3=""
if [ -f "$OUT" ]; then
	# and scripts/bench-limiter.sh's.
	LIMITER=$(awk '/<!-- BEGIN LIMITER -->/ {on = 1; next} /<!-- END LIMITER -->/ {on = 0} on' "$OUT")
	# and scripts/bench-s3.sh's.
	S3=$(awk '/<!-- BEGIN S3 -->/ {on = 1; next} /<!-- END S3 -->/ {on = 0} on' "$OUT")
	NOTES=$(awk '/<!-- BEGIN NOTES -->/ {on = 1; next} /<!-- END NOTES -->/ {on = 0} on' "$OUT")
	# scripts/bench-scaling.sh's tables are kept too.
	SCALING=$(awk '/<!-- BEGIN SCALING -->/ {on = 1; next} /<!-- END SCALING -->/ {on = 0} on' "$OUT")
fi

# One array of {name, berth, dist}, in run order.
for w in "${WL[@]}"; do
	jq -c --arg w "$w" --slurpfile d "$WORK/results/dist-$w.json" \
		'{name: $w, berth: .results[0], dist: $d[0].results[0]}' "$WORK/results/berth-$w.json"
done | jq -s . >"$WORK/combined.json"

mkdir -p "$(dirname "$OUT")"
jq -r \
	--slurpfile lb "$WORK/loopback.json" --slurpfile lbc "$WORK/loopback-c.json" \
	--arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--arg nproc "$(nproc)" --arg cpu "$CPU_MODEL" --arg mem "$MEM" --arg kernel "$(uname -sr)" \
	--arg gover "$(go env GOVERSION)" --arg fs "$FS" --arg commit "$COMMIT" --arg distver "$DIST_VERSION" \
	--arg c "$C" --arg idle "$IDLE_OTHER" --arg other "$OTHER_CPU" --arg steal "$STEAL_CPU" --arg avail "$AVAIL_CPU" \
	--arg timeout "$TIMEOUT" --arg repro "$REPRO" --arg elapsed "$ELAPSED" \
	--argjson bhwm "${BERTH_HWM:-0}" --argjson dhwm "${DIST_HWM:-0}" \
	--arg notes "$NOTES" --arg scaling "$SCALING" --arg limiter "$LIMITER" --arg s3 "$S3" \
	-f /dev/stdin "$WORK/combined.json" >"$OUT" <<'JQ'
def r(n): . as $x | pow(10; n) as $p | ($x * $p | round) / $p;
def x2: if . == null then "—" else "\(r(2))×" end;
def mib: (. / 1048576 | r(1));
def ms: if . == 0 then "—" else "\(r(2))" end;
def ok($res): ($res.errors == 0 and ($res.setup_error // "") == "" and $res.completed > 0);
def movesdata: .berth.blob_size > 0;
def ratio($a; $b): if $a != null and $b != null and $b > 0 then $a / $b else null end;
def cap: (.[0:1] | ascii_upcase) + .[1:];
def cpumb: if .server.cpu_s != null and .blob_size > 0 and .bytes > 0 then .server.cpu_s / (.bytes / 1048576) else null end;
($lb[0].tcp_mb_per_s) as $loop
# The verdict on one workload: metric, ratio, target text, pass/miss.
| def verdict:
    if (ok(.berth) and ok(.dist)) | not then
      {metric: "—", ratio: null, target: "—", result: "invalid: errors"}
    elif .berth.kind == "push" then
      {metric: "req/s", ratio: ratio(.berth.req_per_s; .dist.req_per_s), target: "≥ 2×"}
      | .result = (if .ratio >= 2 then "pass" else "miss" end)
    elif .berth.kind == "pull" then
      ([3 * .dist.mb_per_s, 0.8 * $loop] | min) as $need
      | {metric: "MB/s", ratio: ratio(.berth.mb_per_s; .dist.mb_per_s),
         target: "≥ 3× or ≥ 80% of loopback, whichever is lower: ≥ \($need | r(0)) MB/s",
         result: (if .berth.mb_per_s >= $need then "pass" else "miss" end)}
    elif .berth.kind == "manifest" then
      {metric: "req/s", ratio: ratio(.berth.req_per_s; .dist.req_per_s), target: "≥ 3×"}
      | .result = (if .ratio >= 3 then "pass" else "miss" end)
    else
      {metric: "req/s", ratio: ratio(.berth.req_per_s; .dist.req_per_s), target: "— (none set)", result: "info"}
    end;
  . as $all
| [ $all[] | select(movesdata) | select(ok(.berth) and ok(.dist)) ] as $data
| ([$data[] | .berth.server.cpu_s] | add) as $bcpu
| ([$data[] | .dist.server.cpu_s] | add) as $dcpu
| ([$data[] | .berth.bytes] | add / 1048576) as $bmb
| ([$data[] | .dist.bytes] | add / 1048576) as $dmb
| (if ($bmb // 0) > 0 and ($dmb // 0) > 0 and ($dcpu // 0) > 0 then ($bcpu / $bmb) / ($dcpu / $dmb) else null end) as $cpuratio
| [ $all[] | . + {v: verdict} ] as $rows
| [
  "# Benchmarks: Berth and CNCF Distribution \($distver)",
  "",
  "Generated by `scripts/bench-compare.sh` on \($date) in \($elapsed) s. It runs zot's `zb` workloads",
  "(`berth bench`) against Berth and Distribution side by side on this machine: both on 127.0.0.1 over",
  "plain HTTP, filesystem storage in fresh directories on the same disk, warn-level logs; each workload",
  "runs against Berth, then against Distribution, with the same concurrency and request count, after a",
  "`sync` and a drop of the page cache (so neither pays for the memory pressure the other left). Ratios are Berth ÷ Distribution from this one run; MB means MiB. These are a first",
  "measurement: server performance work may be under way.",
  "",
  "## Machine",
  "",
  "| | |",
  "| --- | --- |",
  "| CPU | \($cpu), \($nproc) cores (client and both servers share them) |",
  "| Memory | \($mem) |",
  "| Kernel | \($kernel) |",
  "| Go | \($gover) |",
  "| Disk | \($fs) |",
  "| Berth | commit \($commit) |",
  "| Distribution | \($distver) (Debian `docker-registry`) |",
  "| Loopback (`berth bench loopback`, best of \($lb[0].trials) trials) | one stream: raw TCP \($loop | r(0)) MB/s (the loopback limit of the pull targets), HTTP GET of an in-memory blob \($lb[0].http_mb_per_s | r(0)) MB/s; \($lbc[0].streams) streams: raw TCP \($lbc[0].tcp_mb_per_s | r(0)) MB/s, HTTP GET \($lbc[0].http_mb_per_s | r(0)) MB/s |",
  "| Other load | before the run, other processes used \($idle)% of a core; during it, \($other) of the \($avail) CPU-seconds the cores had went to neither server nor the benchmark client (kernel writeback and network threads, other processes; steal \($steal) s) |",
  "",
  "## How to reproduce",
  "",
  "    \($repro)",
  "",
  "Settings: `-c \($c)`, `--timeout \($timeout)` per workload, and `-n` per workload as in each table below",
  "(the script's `default_n` table, times `BENCH_SCALE`). Override with `BENCH_C`, `BENCH_N` (one count for",
  "every workload), `BENCH_SCALE`, `BENCH_TIMEOUT` and `BENCH_WORKLOADS`; `BENCH_KEEP=1` keeps the raw",
  "JSON. Needs `go`, `jq`, `curl` and",
  "`apt-get install docker-registry`. One workload by hand:",
  "",
  "    berth bench --url http://127.0.0.1:5000 --workloads pull-100m -c \($c) -n 120 --server-pid PID",
  "",
  "## Summary",
  "",
  "| Workload | Metric | Berth | Distribution | Ratio | Target | Result |",
  "| --- | --- | ---: | ---: | ---: | --- | --- |",
  ( $rows[]
    | (if .v.metric == "MB/s" then [.berth.mb_per_s, .dist.mb_per_s] else [.berth.req_per_s, .dist.req_per_s] end) as $m
    | "| \(.name) | \(.v.metric) | \($m[0] | r(1)) | \($m[1] | r(1)) | \(.v.ratio | x2) | \(.v.target) | \(.v.result) |" ),
  "| server CPU s per MB moved (all push, pull and mixed workloads) | s/MB | \(if $bmb > 0 then ($bcpu / $bmb | r(5)) else "—" end) | \(if $dmb > 0 then ($dcpu / $dmb | r(5)) else "—" end) | \($cpuratio | x2) | ≤ 0.5× | \(if $cpuratio == null then "—" elif $cpuratio <= 0.5 then "pass" else "miss" end) |",
  "| peak RSS (VmHWM over the whole run) | MiB | \($bhwm | mib) | \($dhwm | mib) | \(ratio($bhwm; $dhwm) | x2) | Berth ≤ 100 MiB | \(if $bhwm > 0 and $bhwm <= 104857600 then "pass" else "miss" end) |",
  "",
  "Pull targets are absolute: Berth's MB/s must reach 3× Distribution's or 80% of the one-stream raw",
  "TCP loopback figure above, whichever is lower. Catalog and the 75/25 mix have no stated target.",
  "Ratios of latencies are Berth ÷ Distribution too, so lower is better there.",
  "",
  "## Per workload",
  "",
  "Latencies in ms are per request (a whole push or pull, several HTTP requests). Server CPU is",
  "user+system time of the server process during the measured phase; client CPU is the",
  "benchmark's own, on the same cores.",
  ( $rows[]
    | "",
      "### \(.name)",
      "",
      "\(.berth.description | cap). `-c \(.berth.concurrency) -n \(.berth.requested)`. Target: \(.v.target) (\(.v.result)).",
      "",
      "| | done | errors | time s | req/s | MB/s | p50 ms | p90 ms | p99 ms | server CPU s | CPU s/MB | client CPU s |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ( [["Berth", .berth], ["Distribution", .dist]][]
        | .[1] as $x
        | "| \(.[0]) | \($x.completed)/\($x.requested) | \($x.errors) | \($x.elapsed_s | r(2)) | \($x.req_per_s | r(1)) | \(if $x.blob_size > 0 then ($x.mb_per_s | r(1)) else "—" end) | \($x.latency_ms.p50 | ms) | \($x.latency_ms.p90 | ms) | \($x.latency_ms.p99 | ms) | \($x.server.cpu_s // "—") | \(($x | cpumb) // null | if . == null then "—" else r(5) end) | \($x.client_cpu_s) |" ),
      "| Berth ÷ Distribution | | | | \(ratio(.berth.req_per_s; .dist.req_per_s) | x2) | \(if movesdata then (ratio(.berth.mb_per_s; .dist.mb_per_s) | x2) else "—" end) | \(ratio(.berth.latency_ms.p50; .dist.latency_ms.p50) | x2) | \(ratio(.berth.latency_ms.p90; .dist.latency_ms.p90) | x2) | \(ratio(.berth.latency_ms.p99; .dist.latency_ms.p99) | x2) | | \(ratio(.berth | cpumb; .dist | cpumb) | x2) | |",
      ( [["Berth", .berth], ["Distribution", .dist]][] | select((.[1].first_error // .[1].setup_error // "") != "")
        | "", "\(.[0]) error: `\(.[1].first_error // .[1].setup_error)`" ),
      ( [["Berth", .berth], ["Distribution", .dist]][] | select(.[1].timed_out == true)
        | "", "\(.[0]) stopped at the \($timeout) timeout." )
  ),
  "",
  "## Push scaling and small requests",
  "",
  "Written by `scripts/bench-scaling.sh` (this Berth, a previous one and Distribution side by side); kept",
  "when this script rewrites the file.",
  "",
  "<!-- BEGIN SCALING -->",
  (if $scaling == "" then "(not run yet)" else $scaling end),
  "<!-- END SCALING -->",
  "",
  "## The request limiter, configured but not saturated",
  "",
  "Written by `scripts/bench-limiter.sh`; kept when this script rewrites the file.",
  "",
  "<!-- BEGIN LIMITER -->",
  (if $limiter == "" then "(not run yet)" else $limiter end),
  "<!-- END LIMITER -->",
  "",
  "## S3 storage",
  "",
  "Written by `scripts/bench-s3.sh` (Berth's S3 driver and Distribution's on one versitygw); kept when",
  "this script rewrites the file.",
  "",
  "<!-- BEGIN S3 -->",
  (if $s3 == "" then "(not run yet)" else $s3 end),
  "<!-- END S3 -->",
  "",
  "## Notes",
  "",
  "Hand-written analysis between the markers below is kept when the script rewrites this file.",
  "",
  "<!-- BEGIN NOTES -->",
  (if $notes == "" then "(none yet)" else $notes end),
  "<!-- END NOTES -->"
] | .[]
JQ
log "wrote $OUT"
