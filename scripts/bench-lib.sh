# bench-lib.sh: what the benchmark scripts share. Source it after setting
# WORK (where servers log, as $WORK/NAME.log) and ME (the script's name,
# for messages).

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# free_port prints a loopback port nothing listens on.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "$ME: no free port" >&2
	exit 1
}

# wait_ready URL PID NAME waits until the server answers on URL/v2/.
wait_ready() {
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || { echo "$ME: $3 exited; its log:" >&2; cat "$WORK/$3.log" >&2; exit 1; }
		# Any HTTP answer will do: Berth asks for credentials (401).
		curl -s -o /dev/null "$1/v2/" && return
		sleep 0.1
	done
	echo "$ME: $3 did not answer $1/v2/" >&2
	exit 1
}

# settle gives every measurement the same start: dirty pages written,
# the page cache emptied (when we may: root), so that no server pays for
# the memory pressure or writeback another one left behind.
settle() {
	sync
	if [ -w /proc/sys/vm/drop_caches ]; then
		echo 3 >/proc/sys/vm/drop_caches
	fi
	sleep 1
}

# n_of N prints N times $SCALE (the scripts' BENCH_SCALE), rounded, at
# least 1: a request count scaled for a quick look or a long run.
n_of() { awk -v n="$1" -v s="${SCALE:-1}" 'BEGIN { v = int(n * s + 0.5); print (v < 1 ? 1 : v) }'; }

# dist_config PORT [STORAGE] writes the configuration of a Distribution
# server on 127.0.0.1:PORT to $WORK/dist.yml: deletes on, warn-level logs,
# no access log, and STORAGE as its storage driver (YAML at two spaces'
# indent; default: filesystem storage in $WORK/dist-data).
dist_config() {
	local storage=${2:-"  filesystem:
    rootdirectory: $WORK/dist-data"}
	cat >"$WORK/dist.yml" <<EOC
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
$storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$1
  secret: $ME-not-a-secret
EOC
}

# write_section OUT MARKER HEADING TEXT replaces what stands between
# <!-- BEGIN MARKER --> and <!-- END MARKER --> in OUT with TEXT, adding
# the markers under "## HEADING" at the end when OUT has none.
write_section() {
	local out=$1 marker=$2 heading=$3 text=$4
	if [ ! -f "$out" ]; then printf '# Benchmarks\n' >"$out"; fi
	if ! grep -q "<!-- BEGIN $marker -->" "$out"; then
		printf '\n## %s\n\n<!-- BEGIN %s -->\n<!-- END %s -->\n' "$heading" "$marker" "$marker" >>"$out"
	fi
	printf '%s\n' "$text" >"$WORK/section-$marker.md"
	awk -v section="$WORK/section-$marker.md" -v begin="<!-- BEGIN $marker -->" -v end="<!-- END $marker -->" '
		$0 == begin { print; while ((getline line < section) > 0) print line; skip = 1; next }
		$0 == end { skip = 0 }
		!skip { print }
	' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
}
