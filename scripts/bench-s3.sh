#!/usr/bin/env bash
# bench-s3.sh: `berth bench` against Berth and CNCF Distribution 2.8.2, each
# on its own bucket of one versitygw (S3-compatible, posix backend) on
# 127.0.0.1, side by side, and the S3 requests each server sent; writes the
# S3 section of docs/BENCHMARKS.md.
#
# Both servers run over plain HTTP with warn-level logs and blob redirects
# off (so that pulls measure the server, not the gateway). versitygw logs
# every request it serves; the script counts them per workload, and the
# listings of a bucket among them (GET of the bucket itself).
#
# Needs: go, jq, curl, Debian's docker-registry, and versitygw
# (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0).
#
# Settings (environment): BENCH_C (default 4), BENCH_SCALE (default 1),
# BENCH_TIMEOUT (default 120s), BENCH_WORKLOADS, BENCH_TMPDIR, BENCH_OUT,
# BENCH_KEEP=1, as scripts/bench-compare.sh; BENCH_BERTH_FLAGS adds flags to berth serve
# (--debug-listen 127.0.0.1:6060 to profile it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

C=${BENCH_C:-4}
SCALE=${BENCH_SCALE:-1}
TIMEOUT=${BENCH_TIMEOUT:-120s}
WORKLOADS=${BENCH_WORKLOADS:-push-mono-1m,push-mono-10m,push-mono-100m,push-chunk-10m,pull-1m,pull-10m,pull-100m}
OUT=${BENCH_OUT:-$ROOT/docs/BENCHMARKS.md}
DISTRIBUTION=${BENCH_DISTRIBUTION:-/usr/bin/docker-registry}
export PATH="$(go env GOPATH)/bin:$PATH"
VERSITYGW=$(command -v versitygw || true)

for tool in go jq curl; do
	command -v "$tool" >/dev/null || { echo "bench-s3: $tool is required" >&2; exit 2; }
done
[ -x "$DISTRIBUTION" ] || { echo "bench-s3: $DISTRIBUTION not found; apt-get install docker-registry" >&2; exit 2; }
[ -n "$VERSITYGW" ] || { echo "bench-s3: versitygw not found; go install github.com/versity/versitygw/cmd/versitygw@v1.8.0" >&2; exit 2; }

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/berth-bench-s3.XXXXXX")
BERTH_PID= DIST_PID= GW_PID=
cleanup() {
	local pid
	for pid in $BERTH_PID $DIST_PID $GW_PID; do kill "$pid" 2>/dev/null || true; done
	for pid in $BERTH_PID $DIST_PID $GW_PID; do wait "$pid" 2>/dev/null || true; done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-s3: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ME=bench-s3
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

log "building berth"
BIN=$WORK/berth
go build -o "$BIN" ./cmd/berth

ACCESS=benchaccess SECRET=benchsecret0123456789
GW_PORT=$(free_port)
GW=http://127.0.0.1:$GW_PORT
mkdir -p "$WORK/s3" "$WORK/berth-data" "$WORK/results"
# A bucket of the posix backend is a directory: Distribution's driver does
# not create its bucket, Berth's does.
mkdir "$WORK/s3/dist-bench"
"$VERSITYGW" --access "$ACCESS" --secret "$SECRET" --region us-east-1 --port "127.0.0.1:$GW_PORT" posix "$WORK/s3" >"$WORK/gw.log" 2>&1 &
GW_PID=$!

BERTH_PORT=$(free_port)
DIST_PORT=$(free_port)
while [ "$DIST_PORT" = "$BERTH_PORT" ] || [ "$DIST_PORT" = "$GW_PORT" ]; do DIST_PORT=$(free_port); done
BERTH_URL=http://127.0.0.1:$BERTH_PORT
DIST_URL=http://127.0.0.1:$DIST_PORT

# Distribution's S3 driver on its bucket, redirects off.
dist_config "$DIST_PORT" "  s3:
    accesskey: $ACCESS
    secretkey: $SECRET
    region: us-east-1
    regionendpoint: $GW
    bucket: dist-bench
    secure: false
    v4auth: true
    chunksize: 10485760
  redirect:
    disable: true"

log "starting berth on $BERTH_URL, distribution on $DIST_URL, versitygw on $GW"
ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
BERTH_ADMIN_PASSWORD=$ADMIN_PASSWORD \
	"$BIN" serve --listen "127.0.0.1:$BERTH_PORT" --data "$WORK/berth-data" --insecure-http --log-level warn ${BENCH_BERTH_FLAGS:-} >"$WORK/berth.log" 2>&1 &
BERTH_PID=$!
env -u AWS_CA_BUNDLE "$DISTRIBUTION" serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
DIST_PID=$!
wait_ready "$BERTH_URL" "$BERTH_PID" berth
wait_ready "$DIST_URL" "$DIST_PID" dist

# Berth on S3, as the reference's procedure: the user secret, then the
# Config's storage.
api() { curl -sf -u "admin:$ADMIN_PASSWORD" -H "Content-Type: $1" -X "$2" "$BERTH_URL$3" --data-binary @-; }
b64() { printf %s "$1" | base64 -w0; }
api application/json POST /api/v1/namespaces/openshift-image-registry/secrets >/dev/null <<EOJ
{"apiVersion":"v1","kind":"Secret","metadata":{"name":"image-registry-private-configuration-user","namespace":"openshift-image-registry"},
 "data":{"REGISTRY_STORAGE_S3_ACCESSKEY":"$(b64 $ACCESS)","REGISTRY_STORAGE_S3_SECRETKEY":"$(b64 $SECRET)"}}
EOJ
api application/merge-patch+json PATCH /apis/imageregistry.operator.openshift.io/v1/configs/cluster >/dev/null <<EOJ
{"spec":{"disableRedirect":true,"storage":{"pvc":null,"s3":{"bucket":"berth-bench","region":"us-east-1","regionEndpoint":"$GW","chunkSizeMiB":10}}}}
EOJ
for _ in $(seq 100); do
	if curl -sf -u "admin:$ADMIN_PASSWORD" "$BERTH_URL/apis/imageregistry.operator.openshift.io/v1/configs/cluster" |
		jq -e '.status.storage.s3.bucket == "berth-bench"' >/dev/null; then
		break
	fi
	sleep 0.1
done
[ -d "$WORK/s3/berth-bench" ] || { echo "bench-s3: berth did not put its S3 storage in effect:" >&2; cat "$WORK/berth.log" >&2; exit 1; }
BERTH_TOKEN=$(curl -sf -u "admin:$ADMIN_PASSWORD" "$BERTH_URL/openshift/token" | jq -r .token)

default_n() {
	case $1 in
	push-*-1m) echo 300 ;;
	push-*-10m) echo 60 ;;
	push-*-100m) echo 10 ;;
	pull-1m) echo 1500 ;;
	pull-10m) echo 300 ;;
	pull-100m) echo 40 ;;
	*) echo 1000 ;;
	esac
}
requests_for() { n_of "$(default_n "$1")"; }
# gw_lines counts versitygw's request log lines; gw_lists those that GET a
# bucket itself (a listing).
gw_lines() { grep -c '| vgw |' "$WORK/gw.log" || true; }
gw_lists() { grep '| vgw |' "$WORK/gw.log" | awk -F'|' '$6 ~ /GET/ && $7 ~ /^ *\/[^\/]+ *$/' | wc -l; }

START=$(date +%s)
IFS=, read -ra WL <<<"$WORKLOADS"
for w in "${WL[@]}"; do
	n=$(requests_for "$w")
	for side in berth dist; do
		if [ $side = berth ]; then
			url=$BERTH_URL pid=$BERTH_PID creds=(--username token --password-env)
		else
			url=$DIST_URL pid=$DIST_PID creds=()
		fi
		settle
		l0=$(gw_lines) s0=$(gw_lists)
		BERTH_BENCH_PASSWORD=$BERTH_TOKEN "$BIN" bench --url "$url" "${creds[@]}" --workloads "$w" -c "$C" -n "$n" --timeout "$TIMEOUT" \
			--server-pid "$pid" --no-progress --json >"$WORK/results/$side-$w.json" 2>"$WORK/results/$side-$w.err" || true
		jq -e '.results[0]' "$WORK/results/$side-$w.json" >/dev/null 2>&1 || {
			echo "bench-s3: $w on $side produced no result:" >&2
			cat "$WORK/results/$side-$w.err" >&2
			exit 1
		}
		jq --argjson calls $(($(gw_lines) - l0)) --argjson lists $(($(gw_lists) - s0)) \
			'.results[0] + {s3_requests: $calls, s3_lists: $lists}' "$WORK/results/$side-$w.json" >"$WORK/results/$side-$w.row.json"
		log "$w on $side: $(jq -r '"\(.completed)/\(.requested) ok, \(.errors) errors, \(.req_per_s) req/s, \(.mb_per_s) MB/s, \(.s3_requests) S3 requests (\(.s3_lists) listings)"' "$WORK/results/$side-$w.row.json")"
	done
done
ELAPSED=$(($(date +%s) - START))

for w in "${WL[@]}"; do
	jq -c --arg w "$w" --slurpfile d "$WORK/results/dist-$w.row.json" '{name: $w, berth: ., dist: $d[0]}' "$WORK/results/berth-$w.row.json"
done | jq -s . >"$WORK/combined.json"

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no -- . ':!docs/BENCHMARKS.md' 2>/dev/null)" ]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
REPRO="scripts/bench-s3.sh"
for v in BENCH_C BENCH_SCALE BENCH_TIMEOUT BENCH_WORKLOADS; do
	if [ -n "${!v:-}" ]; then REPRO="$v=${!v} $REPRO"; fi
done
SECTION=$(jq -r --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg commit "$COMMIT" --arg c "$C" --arg elapsed "$ELAPSED" \
	--arg repro "$REPRO" --arg gw "versitygw $(go version -m "$VERSITYGW" 2>/dev/null | awk '$1 == "mod" {print $3}')" -f /dev/stdin "$WORK/combined.json" <<'JQ'
def r(n): . as $x | pow(10; n) as $p | ($x * $p | round) / $p;
def ok($res): ($res.errors == 0 and ($res.setup_error // "") == "" and $res.completed > 0);
def metric: if .berth.kind == "pull" then "mb_per_s" else "req_per_s" end;
def per($x): if $x.completed > 0 then ($x.s3_requests / $x.completed | r(1)) else "—" end;
def cpugb($x): if ($x.server.cpu_s // null) != null and $x.bytes > 0 then ($x.server.cpu_s / ($x.bytes / 1073741824) | r(2)) else "—" end;
[
  "Generated by `\($repro)` on \($date) in \($elapsed) s (Berth commit \($commit), -c \($c), \($gw)). Berth",
  "and Distribution each have a bucket of one versitygw on 127.0.0.1 (posix backend, the same disk), with",
  "10 MiB parts and blob redirects off; each workload runs against Berth, then Distribution. S3 requests",
  "are those versitygw logged during the workload, its setup (the pushes a pull workload starts with)",
  "included; listings are GETs of a bucket itself. Target: Berth ≥ 1.5× Distribution, and no listing.",
  "Pulls here pass through the servers; with redirects on (the default of both) they go to the bucket.",
  "",
  "| Workload | Metric | Berth | Distribution | Ratio | Server CPU s per GiB (Berth / Distribution) | S3 requests per op (Berth / Distribution) | Listings (Berth / Distribution) | Result |",
  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  (.[] | metric as $m
    | (if (ok(.berth) and ok(.dist)) then (.berth[$m] / .dist[$m]) else null end) as $ratio
    | "| \(.name) | \(if $m == "mb_per_s" then "MB/s" else "req/s" end) | \(.berth[$m] | r(1)) | \(.dist[$m] | r(1)) | \(if $ratio then "\($ratio | r(2))×" else "—" end) | \(cpugb(.berth)) / \(cpugb(.dist)) | \(per(.berth)) / \(per(.dist)) | \(.berth.s3_lists) / \(.dist.s3_lists) | \(if $ratio == null then "invalid: errors" elif $ratio >= 1.5 and .berth.s3_lists == 0 then "pass" else "miss" end) |")
] | .[]
JQ
)
write_section "$OUT" S3 "S3 storage" "$SECTION"
log "wrote the S3 section of $OUT"
