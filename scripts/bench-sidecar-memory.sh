#!/usr/bin/env bash
# Measures what a sidecar (`serve --upstream`) holds per counter: its resident memory
# with no counter, after one increment of each of N counters (a pool and a block each),
# and after those pools were dropped for being unused (`--pool-idle-seconds`).
# Usage: scripts/bench-sidecar-memory.sh [COUNTERS [IDLE_SECONDS]]   (default 10000, 120: the
# increments of every counter must take less than IDLE_SECONDS, or pools are dropped before
# they are counted)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bench-lib.sh"
cd "$repo_root"

counters="${1:-10000}"
bench_setup sidecar-memory
idle_seconds="${2:-120}"
serve_port="$(free_port)"
sidecar_port="$(free_port)"
mkdir -m 700 "$work/serve"
"$counterctl" serve --listen "127.0.0.1:$serve_port" --data-dir "$work/serve" --no-auth >"$work/serve.log" 2>&1 &
pids+=("$!")
wait_for_port "$serve_port"
"$counterctl" serve --listen "127.0.0.1:$sidecar_port" --upstream "http://127.0.0.1:$serve_port" --no-auth \
    --pool-idle-seconds "$idle_seconds" >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
pids+=("$sidecar_pid")
wait_for_port "$sidecar_port"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$sidecar_pid/status"; }
# usage: increment_each PREFIX -> one increment of each of the counters PREFIX-1 … PREFIX-N
increment_each() {
    python3 - "$sidecar_port" "$counters" "$1" <<'PY'
import http.client, sys
port, count, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection("127.0.0.1", port)
for index in range(count):
    connection.request("POST", f"/counter/increment?counter={prefix}-{index}")
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"counter {prefix}-{index}: HTTP {answer.status}")
PY
}
metric() { curl -s "http://127.0.0.1:$sidecar_port/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }

none="$(rss_kb)"
started=$SECONDS
increment_each first
held="$(rss_kb)"
filled_in=$(( SECONDS - started ))
pools="$(metric counterctl_upstream_pools)"
# Dropped after idle_seconds unused (the fill must take less), looked for four times per period.
sleep $(( idle_seconds * 2 + 2 ))
dropped_pools="$(metric counterctl_upstream_pools)"
dropped="$(rss_kb)"
increment_each second
again="$(rss_kb)"
echo
echo "a sidecar's resident memory, $counters counters, one increment each in ${filled_in}s ($(nproc) cores, $(uname -r))"
printf '%-44s %10s %8s\n' when "RSS (KiB)" pools
printf '%-44s %10s %8s\n' "started, no counter" "$none" 0
printf '%-44s %10s %8s\n' "after one increment of each counter" "$held" "$pools"
printf '%-44s %10s %8s\n' "after --pool-idle-seconds $idle_seconds dropped them" "$dropped" "$dropped_pools"
printf '%-44s %10s %8s\n' "after as many new counters again" "$again" "$(metric counterctl_upstream_pools)"
awk -v a="$none" -v b="$held" -v n="$pools" 'BEGIN { printf "per pool held: %.2f KiB\n", (b - a) / n }'
