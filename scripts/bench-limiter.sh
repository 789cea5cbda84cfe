#!/usr/bin/env bash
# bench-limiter.sh: what the request limiter of the registry Config
# (spec.requests) costs when it is configured but not saturated: one
# Berth built from the work tree, run twice side by side, once with no
# limits and once with read and write limits well above the load; writes
# the table into docs/BENCHMARKS.md between the LIMITER markers (the
# other scripts keep them). Target: within a few percent.
#
# Measurements (`berth bench`): manifest-get at -c 32, push-mono-10m and
# pull-10m at -c 4; BENCH_ROUNDS rounds (default 3) in a rotating order,
# each after a sync and a drop of the page cache; medians with ranges.
#
# Needs: go, jq, curl. Takes about 3 minutes on 2 cores.
# Settings: BENCH_ROUNDS, BENCH_SCALE, BENCH_TMPDIR, BENCH_OUT, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_SCALE:-1}
OUT=${BENCH_OUT:-$ROOT/docs/BENCHMARKS.md}
LIMITS='{"spec":{"requests":{"read":{"maxRunning":256,"maxInQueue":256,"maxWaitInQueue":"30s"},"write":{"maxRunning":64,"maxInQueue":64,"maxWaitInQueue":"30s"}}}}'

for tool in go jq curl git; do
	command -v "$tool" >/dev/null || { echo "bench-limiter: $tool is required" >&2; exit 2; }
done
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/berth-limiter.XXXXXX")
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-limiter: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ME=bench-limiter
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

log "building berth (work tree)"
go build -o "$WORK/berth" ./cmd/berth
COMMIT=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no -- . ':!docs/BENCHMARKS.md')" ]; then COMMIT="$COMMIT (with uncommitted changes)"; fi

declare -A URL PID TOKEN
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
for side in off limited; do
	port=$(free_port)
	mkdir -p "$WORK/$side-data"
	BERTH_ADMIN_PASSWORD=$PASSWORD "$WORK/berth" serve --listen "127.0.0.1:$port" --data "$WORK/$side-data" \
		--insecure-http --log-level warn >"$WORK/$side.log" 2>&1 &
	PID[$side]=$!
	PIDS+=("$!")
	URL[$side]=http://127.0.0.1:$port
	wait_ready "${URL[$side]}" "${PID[$side]}" "$side"
	TOKEN[$side]=$(curl -sf -u "admin:$PASSWORD" "${URL[$side]}/openshift/token" | jq -r .token)
done
CONFIG=/apis/imageregistry.operator.openshift.io/v1/configs/cluster
curl -sf -u "admin:$PASSWORD" -X PATCH -H 'Content-Type: application/merge-patch+json' -d "$LIMITS" "${URL[limited]}$CONFIG" >/dev/null
for _ in $(seq 100); do
	st=$(curl -sf -u "admin:$PASSWORD" "${URL[limited]}$CONFIG" | jq -r '"\(.status.observedGeneration) \(.metadata.generation) \(.spec.requests.write.maxRunning)"')
	read -r observed generation running <<<"$st"
	[ "$observed" = "$generation" ] && [ "$running" = 64 ] && break
	sleep 0.1
done
[ "$observed" = "$generation" ] || { echo "bench-limiter: the limits were not applied" >&2; exit 1; }

n_of() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s + 0.5); print (v < 1 ? 1 : v) }'; }
measure() {
	local side=$1 w=$2 c=$3 n=$4 round=$5
	settle
	BERTH_BENCH_PASSWORD=${TOKEN[$side]} "$WORK/berth" bench --url "${URL[$side]}" --username token --password-env \
		--workloads "$w" -c "$c" -n "$n" --timeout 300s --server-pid "${PID[$side]}" --no-progress --json \
		>"$WORK/r-$side-$w-$round.json" 2>"$WORK/r-$side-$w-$round.err" || true
	if ! jq -e '.results[0].completed > 0 and .results[0].errors == 0' "$WORK/r-$side-$w-$round.json" >/dev/null 2>&1; then
		echo "bench-limiter: $w on $side failed:" >&2
		cat "$WORK/r-$side-$w-$round.err" "$WORK/r-$side-$w-$round.json" >&2
		exit 1
	fi
	log "round $round $w $side: $(jq -r '.results[0] | "\(.req_per_s) req/s"' "$WORK/r-$side-$w-$round.json")"
}
PLAN=("manifest-get 32 $(n_of 40000)" "push-mono-10m 4 $(n_of 60)" "pull-10m 4 $(n_of 300)")
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
	for item in "${PLAN[@]}"; do
		read -r w c n <<<"$item"
		if [ $((round % 2)) = 1 ]; then order="off limited"; else order="limited off"; fi
		for side in $order; do measure "$side" "$w" "$c" "$n" "$round"; done
	done
done
ELAPSED=$(($(date +%s) - START))
for f in "$WORK"/r-*.json; do
	IFS=- read -r _ side _ <<<"$(basename "$f" .json)"
	jq -c --arg side "$side" '.results[0] + {side: $side}' "$f"
done | jq -s . >"$WORK/all.json"

SECTION=$(jq -r --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg elapsed "$ELAPSED" --arg rounds "$ROUNDS" \
	--arg commit "$COMMIT" --arg limits "$LIMITS" -f /dev/stdin "$WORK/all.json" <<'JQ'
def r(n): . as $x | pow(10; n) as $p | ($x * $p | round) / $p;
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def vals($side; $w): [ .[] | select(.side == $side and .workload == $w) | .req_per_s ];
. as $all
| [
  "Generated by `scripts/bench-limiter.sh` on \($date) in \($elapsed) s: Berth \($commit) twice side by side,",
  "without limits and with `\($limits)` (configured, not saturated); \($rounds) rounds in alternating order,",
  "medians with the range. Target: the limited server within a few percent.",
  "",
  "| Workload | -c | no limits req/s | limits req/s | limits ÷ none |",
  "| --- | ---: | ---: | ---: | ---: |",
  ( ("manifest-get", "push-mono-10m", "pull-10m") as $w
    | ($all | vals("off"; $w)) as $off | ($all | vals("limited"; $w)) as $lim
    | ([ $all[] | select(.workload == $w) | .concurrency ][0]) as $c
    | "| \($w) | \($c) | \($off | median | r(1)) (\($off | min | r(1))–\($off | max | r(1))) | \($lim | median | r(1)) (\($lim | min | r(1))–\($lim | max | r(1))) | \(($lim | median) / ($off | median) | r(3))× |" )
  ] | join("\n")
JQ
)
write_section "$OUT" LIMITER "The request limiter, configured but not saturated" "$SECTION"
log "wrote $OUT"
echo "$SECTION"
