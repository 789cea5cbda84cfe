#!/usr/bin/env bash
# bench-scaleout.sh: Berth on SQLite (one instance) against Berth on
# PostgreSQL with one and with three instances, side by side in one run on
# this machine; writes the tables into docs/BENCHMARKS.md between the
# SCALEOUT markers.
#
# The servers run at once on 127.0.0.1 over plain HTTP with warn-level
# logs, built from the work tree: "sqlite" with its data directory of its
# own; "pg1" and "pg3" each on a database of their own, created on the
# PostgreSQL server BENCH_PG names and dropped at the end (pg3's three
# instances share one data directory, so the blobs are on one volume).
# `berth bench` spreads its connections over pg3's instances round robin
# (--spread), as a TCP load balancer would. Each measurement runs against
# the three in a rotating order after a sync and a drop of the page
# cache, BENCH_ROUNDS times; tables give the median with the range.
#
# Measurements (`berth bench`):
#   manifest-get -c 32, push-mono-1m -c 10, pull-1m -c 8 on the three;
#   catalog at 10,000 repositories and tags at 10,000 tags of one image
#   (-c 8, pages of 100), on sqlite and pg1, once (their setup pushes the
#   10,000 repositories or tags).
#
# Needs: go, jq, curl, psql, and a PostgreSQL server. Takes about 10
# minutes on 2 cores.
#
# Settings (environment):
#   BENCH_PG       PostgreSQL server URL, without a database
#                  (default postgres://postgres@127.0.0.1:5432)
#   BENCH_ROUNDS   repetitions of every measurement (default 3)
#   BENCH_SCALE    factor on the request counts (default 1)
#   BENCH_LARGE    repositories and tags of the listing measurements
#                  (default 10000)
#   BENCH_TMPDIR   where the servers keep data (a disk, not tmpfs)
#   BENCH_OUT      report path (default docs/BENCHMARKS.md)
#   BENCH_KEEP=1   keep the temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_SCALE:-1}
LARGE=${BENCH_LARGE:-10000}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
OUT=${BENCH_OUT:-$ROOT/docs/BENCHMARKS.md}

for tool in go jq curl psql; do
	command -v "$tool" >/dev/null || { echo "bench-scaleout: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/berth-scaleout.XXXXXX")
PIDS=()
DBS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	for db in "${DBS[@]}"; do psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || echo "bench-scaleout: could not drop database $db" >&2; done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-scaleout: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ME=bench-scaleout
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

log "building berth (work tree)"
go build -o "$WORK/berth" ./cmd/berth
COMMIT=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no -- . ':!docs/BENCHMARKS.md')" ]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
PG_VERSION=$(psql "$PG/postgres" -tAc 'SHOW server_version')

declare -A URL PID TOKEN SPREAD
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
# start SIDE N [STORE]: N instances of Berth on a fresh data directory
# they share, on STORE (default: SQLite in the directory).
start() {
	local side=$1 n=$2 store=${3:-} args=() addrs=()
	[ -n "$store" ] && args=(--store "$store")
	mkdir -p "$WORK/$side-data"
	for i in $(seq "$n"); do
		local port
		port=$(free_port)
		BERTH_ADMIN_PASSWORD=$PASSWORD "$WORK/berth" serve --listen "127.0.0.1:$port" --data "$WORK/$side-data" \
			--insecure-http --log-level warn "${args[@]}" >"$WORK/$side-$i.log" 2>&1 &
		PIDS+=("$!")
		[ "$i" = 1 ] && PID[$side]=$! && URL[$side]=http://127.0.0.1:$port
		wait_ready "http://127.0.0.1:$port" "$!" "$side-$i"
		addrs+=("127.0.0.1:$port")
	done
	SPREAD[$side]=$(IFS=,; echo "${addrs[*]}")
	TOKEN[$side]=$(curl -sf -u "admin:$PASSWORD" "${URL[$side]}/openshift/token" | jq -r .token)
}
# newdb NAME: a database of its own, reached without TLS (loopback, as a
# socket would be).
newdb() {
	local db=berth_bench_$1_$$
	psql "$PG/postgres" -qc "CREATE DATABASE $db"
	DBS+=("$db")
	echo "$PG/$db?sslmode=disable"
}
start sqlite 1
start pg1 1 "$(newdb pg1)"
start pg3 3 "$(newdb pg3)"

# measure SIDE WORKLOAD C N ROUND [FLAGS...]: one run, its JSON kept.
measure() {
	local side=$1 w=$2 c=$3 n=$4 round=$5
	shift 5
	local extra=("$@") out="$WORK/r-$side-$w-c$c-$round"
	[ "$side" = pg3 ] && extra+=(--spread "${SPREAD[$side]}") || extra+=(--server-pid "${PID[$side]}")
	settle
	BERTH_BENCH_PASSWORD=${TOKEN[$side]} "$WORK/berth" bench --url "${URL[$side]}" --username token --password-env \
		--workloads "$w" -c "$c" -n "$n" --timeout 600s --no-progress --json "${extra[@]}" >"$out.json" 2>"$out.err" || true
	if ! jq -e '.results[0].completed > 0 and .results[0].errors == 0' "$out.json" >/dev/null 2>&1; then
		echo "bench-scaleout: $w -c $c on $side failed:" >&2
		cat "$out.err" "$out.json" >&2
		exit 1
	fi
	log "round $round $w -c $c $side: $(jq -r '.results[0] | "\(.req_per_s) req/s, p50 \(.latency_ms.p50) ms, setup \(.setup_s) s"' "$out.json")"
}

PLAN=(
	"manifest-get 32 $(n_of 20000)"
	"push-mono-1m 10 $(n_of 300)"
	"pull-1m 8 $(n_of 2000)"
)
SIDES=(sqlite pg1 pg3)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
	for item in "${PLAN[@]}"; do
		read -r w c n <<<"$item"
		k=$(((round - 1) % ${#SIDES[@]}))
		for j in $(seq 0 $((${#SIDES[@]} - 1))); do
			measure "${SIDES[$(((j + k) % ${#SIDES[@]}))]}" "$w" "$c" "$n" "$round"
		done
	done
done
for side in sqlite pg1; do
	measure "$side" catalog 8 "$(n_of 2000)" 1 --catalog-repos "$LARGE"
	measure "$side" tags 8 "$(n_of 2000)" 1 --tags "$LARGE"
done
ELAPSED=$(($(date +%s) - START))

for f in "$WORK"/r-*.json; do
	b=$(basename "$f" .json)
	IFS=- read -r _ side _ <<<"$b"
	jq -c --arg side "$side" '.results[0] + {side: $side}' "$f"
done | jq -s . >"$WORK/all.json"

CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
FS=$(df -T "$WORK" | awk 'NR == 2 {print $2 " on " $1}')

SECTION=$(jq -r \
	--arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg elapsed "$ELAPSED" --arg rounds "$ROUNDS" \
	--arg commit "$COMMIT" --arg pg "$PG_VERSION" --arg large "$LARGE" \
	--arg cpu "$CPU_MODEL" --arg nproc "$(nproc)" --arg fs "$FS" \
	-f /dev/stdin "$WORK/all.json" <<'JQ'
def r(n): . as $x | pow(10; n) as $p | ($x * $p | round) / $p;
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def runs($side; $w): [ .[] | select(.side == $side and .workload == $w) ];
def med($side; $w; f): [ runs($side; $w)[] | f ] | median;
def span($side; $w; f; n): [ runs($side; $w)[] | f ] | if length > 1 then " (\(min | r(n))–\(max | r(n)))" else "" end;
def name: {sqlite: "1 instance, SQLite", pg1: "1 instance, PostgreSQL", pg3: "3 instances, PostgreSQL"}[.];
. as $all
| [
  "Generated by `scripts/bench-scaleout.sh` on \($date) in \($elapsed) s: Berth \($commit), PostgreSQL",
  "\($pg) on the same machine over loopback without TLS; \($rounds) rounds of each measurement against the three in a rotating order",
  "after a `sync` and a drop of the page cache; medians, with the range over the rounds. \($cpu),",
  "\($nproc) cores shared by the client, every instance and PostgreSQL; \($fs).",
  "",
  "| Workload | " + ([("sqlite", "pg1", "pg3") | name] | join(" | ")) + " | PostgreSQL 1 over SQLite |",
  "| --- | ---: | ---: | ---: | ---: |",
  ( ("manifest-get", "push-mono-1m", "pull-1m") as $w
    | $all | [("sqlite", "pg1", "pg3") as $s | "\(med($s; $w; .req_per_s) | r(1)) req/s\(span($s; $w; .req_per_s; 1)), p50 \(med($s; $w; .latency_ms.p50) | r(2)) ms"] as $cells
    | "| \($w) -c \(runs("sqlite"; $w)[0].concurrency) | \($cells | join(" | ")) | \(med("pg1"; $w; .req_per_s) / med("sqlite"; $w; .req_per_s) | r(2))× |" ),
  "",
  "Listings at \($large) repositories (catalog, pages of 100) and \($large) tags of one image (tags/list,",
  "pages of 100), -c 8, one round:",
  "",
  "| Workload | 1 instance, SQLite | 1 instance, PostgreSQL |",
  "| --- | ---: | ---: |",
  ( ("catalog", "tags") as $w
    | $all | "| \($w) | \([("sqlite", "pg1") as $s | "\(med($s; $w; .req_per_s) | r(1)) req/s, p50 \(med($s; $w; .latency_ms.p50) | r(2)) ms, p99 \(med($s; $w; .latency_ms.p99) | r(2)) ms"] | join(" | ")) |" )
] | join("\n")
JQ
)
write_section "$OUT" SCALEOUT "PostgreSQL and several instances" "$SECTION"
log "wrote the SCALEOUT section of $OUT"
