#!/usr/bin/env bash
# bench-claims.sh: what garbage collection's claims cost a push. Runs two
# Berth binaries side by side (BEFORE, a build without claims; AFTER, one
# with them), each on SQLite and on PostgreSQL, and pushes unique 1 MiB
# images at both with `berth bench` (push-mono-1m), rounds interleaved so
# that machine noise falls on both alike. Prints a Markdown table of the
# medians.
#
# Usage: scripts/bench-claims.sh BEFORE-BINARY AFTER-BINARY
# Needs: jq, bc, curl, psql and a PostgreSQL server.
# Env: BENCH_PG (default postgres://postgres@127.0.0.1:5432), BENCH_N (300),
#      BENCH_C (10), BENCH_ROUNDS (3).
set -euo pipefail
before=$1 after=$2
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
N=${BENCH_N:-300} C=${BENCH_C:-10} ROUNDS=${BENCH_ROUNDS:-3}
WORK=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for db in bench_claims_before bench_claims_after; do psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
port=5810
declare -A url
start() { # name binary store [flags...]
	local name=$1 bin=$2 store=$3 extra=("${@:4}")
	[ -n "$store" ] && extra+=(--store "$store")
	mkdir -p "$WORK/$name"
	BERTH_ADMIN_PASSWORD=bench-Pa55word "$bin" serve --data "$WORK/$name" --listen 127.0.0.1:$port --insecure-http \
		--log-level warn "${extra[@]}" 2>"$WORK/$name.log" &
	pids+=($!)
	url[$name]=http://127.0.0.1:$port
	port=$((port + 1))
}
for db in bench_claims_before bench_claims_after; do
	psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
	psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
done
# No collection runs during the measurement: the cost measured is the
# claims' alone.
start before-sqlite "$before" ""
start after-sqlite "$after" "" --gc-interval -1s
start before-pg "$before" "$PG/bench_claims_before"
start after-pg "$after" "$PG/bench_claims_after" --gc-interval -1s
for name in "${!url[@]}"; do
	for _ in $(seq 60); do curl -fs "${url[$name]}/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
done
declare -A results
for round in $(seq "$ROUNDS"); do
	for name in before-sqlite after-sqlite before-pg after-pg; do
		token=$(curl -sf -u admin:bench-Pa55word "${url[$name]}/openshift/token" | jq -r .token)
		r=$(BERTH_BENCH_PASSWORD=$token "$after" bench --url "${url[$name]}" --username token --password-env \
			--workloads push-mono-1m -c "$C" -n "$N" --no-progress --json | jq -er '.results[0] | select(.errors == 0) | .req_per_s')
		results[$name]+="$r "
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| store | push 1 MiB -c $C, before (req/s) | after (req/s) | after vs before |"
echo "|---|---|---|---|"
for s in sqlite pg; do
	b=$(echo "${results[before-$s]}" | median) a=$(echo "${results[after-$s]}" | median)
	printf '| %s | %.0f | %.0f | %.2f× |\n' "$s" "$b" "$a" "$(echo "$a / $b" | bc -l)"
done
