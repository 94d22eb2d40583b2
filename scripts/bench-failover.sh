#!/usr/bin/env bash
# Measures a sidecar (`serve --upstream`) over three regions of one counter API while the
# preferred region fails mid-run: IDs per second before, during and after the outage,
# the errors and latency its callers saw, and the time from the failure to the first
# block fetched from another region.
#
# One `serve` is the table; three TCP fronts (scripts/tcp_front.py) in front of it are
# the regions, as on a strongly consistent global table where every region answers from
# one table. The sidecar gets `--upstream` of the three, `--block-seconds 1` so that a
# block is fetched about every second whatever the rate (with the default, 60 s, the
# first fetch after a failure may be a minute away), and serves 50 wrk clients for
# 3 x SECONDS: healthy, the first region out, and back. Two outages are measured in turn:
# `refused` (the front killed: connections refused) and `silent` (the front stopped
# with SIGSTOP: connections accepted and never answered).
#
# Installs wrk from Debian's packages when missing (root).
# Usage: scripts/bench-failover.sh [SECONDS_PER_PHASE]   (default 10 s)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bench-lib.sh"
cd "$repo_root"

bench_setup failover "$@"

api_key="bench-0123456789abcdef0123456789"
printf '%s\n' "$api_key" >"$work/api-key"
serve_port="$(free_port)"
mkdir -m 700 "$work/serve"
"$counterctl" serve --listen "127.0.0.1:$serve_port" --data-dir "$work/serve" --api-key-file "$work/api-key" \
    >"$work/serve.log" 2>&1 &
pids+=("$!")
wait_for_port "$serve_port"

# usage: start_front INDEX -> (re)starts region INDEX's front on its port
declare -A front_port front_pid
start_front() {
    python3 scripts/tcp_front.py "${front_port[$1]}" "$serve_port" &
    front_pid[$1]=$!
    pids+=("$!")
    wait_for_port "${front_port[$1]}"
}
for region in 1 2 3; do
    front_port[$region]="$(free_port)"
    start_front "$region"
done
upstreams="http://127.0.0.1:${front_port[1]},http://127.0.0.1:${front_port[2]},http://127.0.0.1:${front_port[3]}"

cat >"$work/increment.lua" <<LUA
wrk.method = "POST"
wrk.path = "/counter/increment?counter=failover"
wrk.headers["x-api-key"] = "$api_key"
LUA

now() { date +%s.%N; }
# usage: ms WRK_DURATION (250.00us, 1.20ms, 2.00s) -> milliseconds
ms() {
    awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v / 1000; else if (v ~ /ms$/) printf "%.2f", v + 0; else printf "%.2f", v * 1000 }'
}
# usage: metric PORT NAME -> its value in the sidecar's /metrics
metric() {
    curl -s -H "x-api-key: $api_key" "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name { print $2 }'
}
handed_metric='counterctl_requests_total{route="/counter/increment",status="200"}'

echo
echo "a sidecar over three regions, the first out for ${seconds}s of $((3 * seconds))s; 50 wrk clients"
echo "$(nproc) cores, $(uname -r)"
printf '%-8s %10s %10s %10s %8s %9s %9s %12s %6s\n' outage 'IDs/s ok' 'IDs/s out' 'IDs/s back' errors \
    p99_ms max_ms 'to_block_ms' moved
for outage in refused silent; do
    sidecar_port="$(free_port)"
    COUNTERCTL_UPSTREAM_API_KEY="$api_key" "$counterctl" serve --listen "127.0.0.1:$sidecar_port" \
        --upstream "$upstreams" --block-seconds 1 --api-key-file "$work/api-key" \
        --state-dir "$work/state-$outage" >"$work/sidecar-$outage.log" 2>&1 &
    sidecar_pid=$!
    pids+=("$sidecar_pid")
    wait_for_port "$sidecar_port"
    # Warm up: connections, the first blocks.
    wrk --threads 1 --connections 50 --duration 2s --script "$work/increment.lua" \
        "http://127.0.0.1:$sidecar_port" >/dev/null
    wrk --threads 1 --connections 50 --duration "$((3 * seconds))s" --timeout 10s --latency \
        --script "$work/increment.lua" "http://127.0.0.1:$sidecar_port" >"$work/wrk-$outage" &
    wrk_pid=$!
    start="$(metric "$sidecar_port" "$handed_metric")"
    sleep "$seconds"
    failed_handed="$(metric "$sidecar_port" "$handed_metric")"
    case $outage in
        refused) kill -KILL "${front_pid[1]}"; wait "${front_pid[1]}" 2>/dev/null || true ;;
        silent) kill -STOP "${front_pid[1]}" ;;
    esac
    failed_at="$(now)"
    fetched="$(metric "$sidecar_port" counterctl_upstream_blocks_fetched_total)"
    to_block=""
    while [[ -z $to_block ]]; do
        if (( $(metric "$sidecar_port" counterctl_upstream_blocks_fetched_total) > fetched )); then
            to_block="$(awk -v a="$failed_at" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
        elif awk -v a="$failed_at" -v b="$(now)" -v s="$seconds" 'BEGIN { exit !(b - a > s) }'; then
            to_block="none"
        else
            sleep 0.02
        fi
    done
    sleep "$(awk -v a="$failed_at" -v b="$(now)" -v s="$seconds" 'BEGIN { d = s - (b - a); print (d > 0 ? d : 0) }')"
    back_handed="$(metric "$sidecar_port" "$handed_metric")"
    case $outage in
        refused) start_front 1 ;;
        silent) kill -CONT "${front_pid[1]}" ;;
    esac
    wait "$wrk_pid"
    end="$(metric "$sidecar_port" "$handed_metric")"
    moved="$(metric "$sidecar_port" "counterctl_upstream_moved_away_total{url=\"http://127.0.0.1:${front_port[1]}\"}")"
    up="$(metric "$sidecar_port" "counterctl_upstream_up{url=\"http://127.0.0.1:${front_port[1]}\"}")"
    errors="$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' \
        "$work/wrk-$outage")"
    p99="$(awk '$1 == "99%" { print $2 }' "$work/wrk-$outage")"
    max="$(awk '$1 == "Latency" { print $4; exit }' "$work/wrk-$outage")"
    printf '%-8s %10s %10s %10s %8s %9s %9s %12s %6s\n' "$outage" \
        "$(( (failed_handed - start) / seconds ))" "$(( (back_handed - failed_handed) / seconds ))" \
        "$(( (end - back_handed) / seconds ))" "$errors" "$(ms "$p99")" "$(ms "$max")" "$to_block" "$moved"
    [[ $up == 1 ]] || echo "  the first region was not preferred again by the end (counterctl_upstream_up $up)"
    kill "$sidecar_pid"
    wait "$sidecar_pid" 2>/dev/null || true
done
