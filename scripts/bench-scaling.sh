#!/usr/bin/env bash
# bench-scaling.sh: how pushes scale with concurrency, and what a small
# request costs, for this Berth, a previous Berth and CNCF Distribution,
# side by side in one run; writes the tables into docs/BENCHMARKS.md
# between the SCALING markers (bench-compare.sh keeps them).
#
# The servers run at once on 127.0.0.1 over plain HTTP, each with
# filesystem storage in a fresh directory on the same disk and warn-level
# logs: Berth built from the work tree ("new"), Berth built from
# BENCH_BASE ("previous"), and Debian's docker-registry; for pushes, the
# two Berths with --storage memory too, each started afresh for every
# measurement. Each measurement
# runs against the three in a rotating order, after a sync and a drop of
# the page cache, and is repeated BENCH_ROUNDS times; tables give the
# median with the range.
#
# Measurements (`berth bench`, zot's zb workloads):
#   push-mono-10m and push-chunk-10m at -c 1 and -c 10: the scaling ratio
#   is each server's -c 10 req/s over its own -c 1 req/s;
#   manifest-get at -c 32: req/s;
#   pull-1m at -c 4: server CPU per request (user+system from /proc).
#
# Needs: go, jq, curl, git, and docker-registry (apt-get install
# docker-registry). Takes 5-10 minutes on 2 cores.
#
# Settings (environment):
#   BENCH_BASE     git revision of the previous Berth (default 08aaa44, the
#                  last commit before issue 11's push-scaling work)
#   BENCH_ROUNDS   repetitions of every measurement (default 3)
#   BENCH_SCALE    factor on the request counts (default 1)
#   BENCH_TMPDIR   where the servers keep data (a disk, not tmpfs)
#   BENCH_OUT      report path (default docs/BENCHMARKS.md)
#   BENCH_KEEP=1   keep the temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE=${BENCH_BASE:-08aaa44}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_SCALE:-1}
OUT=${BENCH_OUT:-$ROOT/docs/BENCHMARKS.md}
DISTRIBUTION=${BENCH_DISTRIBUTION:-/usr/bin/docker-registry}

for tool in go jq curl git; do
	command -v "$tool" >/dev/null || { echo "bench-scaling: $tool is required" >&2; exit 2; }
done
[ -x "$DISTRIBUTION" ] || { echo "bench-scaling: $DISTRIBUTION not found; apt-get install docker-registry" >&2; exit 2; }

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/berth-scaling.XXXXXX")
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	git -C "$ROOT" worktree remove --force "$WORK/base-src" 2>/dev/null || true
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-scaling: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ME=bench-scaling
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

log "building berth (work tree) and berth $BASE"
go build -o "$WORK/berth-new" ./cmd/berth
git worktree add -q --detach "$WORK/base-src" "$BASE"
(cd "$WORK/base-src" && go build -o "$WORK/berth-previous" ./cmd/berth)
NEW_COMMIT=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no -- . ':!docs/BENCHMARKS.md')" ]; then NEW_COMMIT="$NEW_COMMIT (with uncommitted changes)"; fi
BASE_COMMIT=$(git rev-parse --short "$BASE")

declare -A URL PID TOKEN
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
# start_berth SIDE: the Berth of SIDE on a fresh data directory. new and
# previous keep blobs on disk; newmem and prevmem are the same builds with
# --storage memory.
start_berth() {
	local side=$1 bin args=()
	case $side in
	new | newmem) bin=$WORK/berth-new ;;
	*) bin=$WORK/berth-previous ;;
	esac
	case $side in *mem) args=(--storage memory) ;; esac
	local port
	port=$(free_port)
	rm -rf "$WORK/$side-data"
	mkdir -p "$WORK/$side-data"
	BERTH_ADMIN_PASSWORD=$PASSWORD "$bin" serve --listen "127.0.0.1:$port" --data "$WORK/$side-data" \
		--insecure-http --log-level warn "${args[@]}" >"$WORK/$side.log" 2>&1 &
	PID[$side]=$!
	PIDS+=("$!")
	URL[$side]=http://127.0.0.1:$port
	wait_ready "${URL[$side]}" "${PID[$side]}" "$side"
	TOKEN[$side]=$(curl -sf -u "admin:$PASSWORD" "${URL[$side]}/openshift/token" | jq -r .token)
}
# stop_berth SIDE: a memory server keeps every blob it was sent; it runs
# only for its own measurement, so that no measurement runs beside the
# memory another one filled.
stop_berth() {
	kill "${PID[$1]}" 2>/dev/null || true
	wait "${PID[$1]}" 2>/dev/null || true
}
for side in new previous; do
	start_berth "$side"
done
port=$(free_port)
mkdir -p "$WORK/dist-data"
dist_config "$port"
env -u AWS_CA_BUNDLE "$DISTRIBUTION" serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
PID[dist]=$!
PIDS+=("$!")
URL[dist]=http://127.0.0.1:$port
wait_ready "${URL[dist]}" "${PID[dist]}" dist


# measure SIDE WORKLOAD C N ROUND: one run, its JSON kept.
measure() {
	local side=$1 w=$2 c=$3 n=$4 round=$5 creds=()
	[ "$side" != dist ] && creds=(--username token --password-env)
	case $side in *mem) start_berth "$side" ;; esac
	settle
	BERTH_BENCH_PASSWORD=${TOKEN[$side]:-} "$WORK/berth-new" bench --url "${URL[$side]}" "${creds[@]}" \
		--workloads "$w" -c "$c" -n "$n" --timeout 300s --server-pid "${PID[$side]}" --no-progress --json \
		>"$WORK/r-$side-$w-c$c-$round.json" 2>"$WORK/r-$side-$w-c$c-$round.err" || true
	if ! jq -e '.results[0].completed > 0 and .results[0].errors == 0' "$WORK/r-$side-$w-c$c-$round.json" >/dev/null 2>&1; then
		echo "bench-scaling: $w -c $c on $side failed:" >&2
		cat "$WORK/r-$side-$w-c$c-$round.err" "$WORK/r-$side-$w-c$c-$round.json" >&2
		exit 1
	fi
	log "round $round $w -c $c $side: $(jq -r '.results[0] | "\(.req_per_s) req/s, server cpu \(.server.cpu_s) s"' "$WORK/r-$side-$w-c$c-$round.json")"
	case $side in *mem) stop_berth "$side" ;; esac
}

# Each item: workload, -c, -n, and the servers it runs against.
PUSHERS="new previous dist newmem prevmem"
PLAN=(
	"push-mono-10m 1 $(n_of 40) $PUSHERS" "push-mono-10m 10 $(n_of 100) $PUSHERS"
	"push-chunk-10m 1 $(n_of 40) $PUSHERS" "push-chunk-10m 10 $(n_of 100) $PUSHERS"
	"manifest-get 32 $(n_of 40000) new previous dist"
	"pull-1m 4 $(n_of 3000) new previous dist"
)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
	for item in "${PLAN[@]}"; do
		read -r w c n sides <<<"$item"
		read -ra SIDES <<<"$sides"
		# Rotate who goes first, so no side always meets a warmer or a
		# busier machine.
		k=$(((round - 1) % ${#SIDES[@]}))
		for j in $(seq 0 $((${#SIDES[@]} - 1))); do
			measure "${SIDES[$(((j + k) % ${#SIDES[@]}))]}" "$w" "$c" "$n" "$round"
		done
	done
done
ELAPSED=$(($(date +%s) - START))

# One JSON document of every run.
for f in "$WORK"/r-*.json; do
	b=$(basename "$f" .json)
	IFS=- read -r _ side rest <<<"$b"
	jq -c --arg side "$side" '.results[0] + {side: $side}' "$f"
done | jq -s . >"$WORK/all.json"

CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
FS=$(df -T "$WORK" | awk 'NR == 2 {print $2 " on " $1}')
DIST_VERSION=$("$DISTRIBUTION" --version 2>/dev/null | awk '{print $NF}')

SECTION=$(jq -r \
	--arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg elapsed "$ELAPSED" --arg rounds "$ROUNDS" \
	--arg new "$NEW_COMMIT" --arg base "$BASE_COMMIT" --arg dist "$DIST_VERSION" \
	--arg cpu "$CPU_MODEL" --arg nproc "$(nproc)" --arg fs "$FS" \
	-f /dev/stdin "$WORK/all.json" <<'JQ'
def r(n): . as $x | pow(10; n) as $p | ($x * $p | round) / $p;
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def runs($side; $w; $c): [ .[] | select(.side == $side and .workload == $w and .concurrency == $c) ];
def med($side; $w; $c; f): [ runs($side; $w; $c)[] | f ] | median;
def span($side; $w; $c; f; n): [ runs($side; $w; $c)[] | f ] | "\(min | r(n))–\(max | r(n))";
def name: {new: "Berth \($new)", previous: "Berth \($base) (previous)", dist: "Distribution \($dist)",
  newmem: "Berth \($new), memory storage", prevmem: "Berth \($base) (previous), memory storage"}[.];
. as $all
| ["new", "previous", "dist"] as $sides
| [
  "Generated by `scripts/bench-scaling.sh` on \($date) in \($elapsed) s: \($rounds) rounds, each measurement",
  "against the servers in a rotating order after a `sync` and a drop of the page cache (a memory-storage",
  "server started afresh); medians, with the range over the rounds. \($cpu), \($nproc) cores shared by the",
  "client and the servers; \($fs).",
  "",
  "### Push scaling (`-c 10` over the same server's `-c 1`; target ≥ 1.6×)",
  "",
  "| Server | Workload | req/s at -c 1 | req/s at -c 10 | Scaling | Server CPU s/MB at -c 10 |",
  "| --- | --- | ---: | ---: | ---: | ---: |",
  ( $sides[] as $s | ("push-mono-10m", "push-chunk-10m") as $w
    | $all | med($s; $w; 1; .req_per_s) as $one | med($s; $w; 10; .req_per_s) as $ten
    | "| \($s | name) | \($w) | \($one | r(1)) (\(span($s; $w; 1; .req_per_s; 1))) | \($ten | r(1)) (\(span($s; $w; 10; .req_per_s; 1))) | \($ten / $one | r(2))× | \(med($s; $w; 10; .server.cpu_s / (.bytes / 1048576)) | r(5)) |" ),
  "",
  "### Memory storage against the filesystem (push req/s; an in-memory backend should be the faster)",
  "",
  "| Server | push-mono-10m -c 1 | push-mono-10m -c 10 | push-chunk-10m -c 1 | push-chunk-10m -c 10 |",
  "| --- | ---: | ---: | ---: | ---: |",
  ( ("new", "newmem", "previous", "prevmem") as $s
    | "| \($s | name) | \([("push-mono-10m", "push-chunk-10m") as $w | (1, 10) as $c | $all | med($s; $w; $c; .req_per_s) | r(1) | tostring] | join(" | ")) |" ),
  "",
  "### Small requests (new over previous; targets: manifest GET ≥ 1.3×, CPU per pull ≤ 0.8×)",
  "",
  "| Server | manifest-get req/s at -c 32 | pull-1m server CPU ms per request at -c 4 | pull-1m req/s |",
  "| --- | ---: | ---: | ---: |",
  ( $sides[] as $s
    | "| \($s | name) | \($all | med($s; "manifest-get"; 32; .req_per_s) | r(0)) (\($all | span($s; "manifest-get"; 32; .req_per_s; 0))) | \($all | med($s; "pull-1m"; 4; 1000 * .server.cpu_s / .completed) | r(3)) (\($all | span($s; "pull-1m"; 4; 1000 * .server.cpu_s / .completed; 3))) | \($all | med($s; "pull-1m"; 4; .req_per_s) | r(0)) |" ),
  "| new ÷ previous | \(($all | med("new"; "manifest-get"; 32; .req_per_s)) / ($all | med("previous"; "manifest-get"; 32; .req_per_s)) | r(2))× | \(($all | med("new"; "pull-1m"; 4; .server.cpu_s / .completed)) / ($all | med("previous"; "pull-1m"; 4; .server.cpu_s / .completed)) | r(2))× | |"
  ] | join("\n")
JQ
)

write_section "$OUT" SCALING "Push scaling and small requests" "$SECTION"
log "wrote $OUT"
echo "$SECTION"
