#!/usr/bin/env bash
# Measures `counterctl serve --upstream` (a sidecar handing out IDs from blocks reserved
# at an upstream) side by side, in one run, with what it would replace: `counterctl
# serve` on SQLite (the sidecar's upstream here), and Redis INCR with `appendonly yes,
# appendfsync always` (the durability serve has) and with `appendonly no` (none).
# Requests per second, p50/p99 latency and the server's CPU time (user + system) per
# request, at 1 and 50 concurrent clients; and for the sidecar the upstream requests it
# made per million IDs it handed out.
#
# Both counterctl servers run as in production, with an API key; the sidecar reaches its
# upstream with the upstream's key. wrk drives counterctl (POST increments),
# `redis-benchmark -t incr` Redis. Each measurement alternates the systems for a few
# rounds and reports medians (the machine may be shared).
#
# Installs redis-server, redis-tools and wrk from Debian's packages when missing (root).
# Usage: scripts/bench-sidecar.sh [SECONDS_PER_RUN [ROUNDS]]   (default 10 s, 3 rounds)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bench-lib.sh"
cd "$repo_root"

bench_setup sidecar "$@"

api_key="bench-0123456789abcdef0123456789"
printf '%s\n' "$api_key" >"$work/api-key"
serve_port="$(free_port)"
sidecar_port="$(free_port)"
redis_port="$(free_port)"
redis_plain_port="$(free_port)"

mkdir -m 700 "$work/serve"
"$counterctl" serve --listen "127.0.0.1:$serve_port" --data-dir "$work/serve" --api-key-file "$work/api-key" \
    >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_for_port "$serve_port"
COUNTERCTL_UPSTREAM_API_KEY="$api_key" "$counterctl" serve --listen "127.0.0.1:$sidecar_port" \
    --upstream "http://127.0.0.1:$serve_port" --api-key-file "$work/api-key" >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
pids+=("$sidecar_pid")
start_redis redis "$redis_port" --appendonly yes --appendfsync always
redis_pid=$started_pid
start_redis redis-plain "$redis_plain_port" --appendonly no
redis_plain_pid=$started_pid
for port in "$sidecar_port" "$redis_port" "$redis_plain_port"; do wait_for_port "$port"; done

for counter in serve sidecar; do
    cat >"$work/$counter.lua" <<LUA
wrk.method = "POST"
wrk.path = "/counter/increment?counter=$counter"
wrk.headers["x-api-key"] = "$api_key"
LUA
done

# usage: measure SYSTEM CLIENTS REQUESTS -> "requests/s p50_ms p99_ms server_cpu_us_per_request"
measure() {
    case $1 in
        serve) measure_wrk "$serve_pid" "$2" "http://127.0.0.1:$serve_port" "$work/serve.lua" ;;
        sidecar) measure_wrk "$sidecar_pid" "$2" "http://127.0.0.1:$sidecar_port" "$work/sidecar.lua" ;;
        redis) measure_redis "$redis_pid" "$redis_port" "$2" "$3" ;;
        redis-plain) measure_redis "$redis_plain_pid" "$redis_plain_port" "$2" "$3" ;;
    esac
}

# usage: metric NAME -> its value in the sidecar's /metrics
metric() {
    curl -s -H "x-api-key: $api_key" "http://127.0.0.1:$sidecar_port/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

# Warm up (page cache, connections, the database file, the AOF, the sidecar's blocks).
for system in serve sidecar redis redis-plain; do measure "$system" 50 20000 >/dev/null; done
fetched_before="$(metric counterctl_upstream_blocks_fetched_total)"
handed_before="$(metric 'counterctl_requests_total{route="/counter/increment",status="200"}')"

systems=(sidecar serve redis redis-plain)
declare -A labels=(
    [sidecar]="serve --upstream (wrk)"
    [serve]="serve, SQLite (wrk)"
    [redis]="redis INCR, fsync always"
    [redis-plain]="redis INCR, appendonly no"
)
echo
echo "counterctl serve --upstream vs counterctl serve vs redis-server"
echo "$rounds alternating rounds of ${seconds}s per system and concurrency; medians"
echo "$(nproc) cores, $(uname -r), data in $work ($(df --output=source "$work" | tail -1))"
printf '%-28s %8s %12s %10s %10s %12s\n' system clients requests/s p50_ms p99_ms cpu_us/req
declare -A rps_of
for clients in 1 50; do
    for system in "${systems[@]}"; do : >"$work/$system-$clients"; done
    for _ in $(seq "$rounds"); do
        for system in "${systems[@]}"; do
            # Redis gets about as many requests as the sidecar answered in the same time.
            served="$(tail -1 "$work/sidecar-$clients" 2>/dev/null | cut -d' ' -f1)"
            requests=$(( ${served:-10000} * seconds > 10000 ? ${served:-10000} * seconds : 10000 ))
            measure "$system" "$clients" "$requests" >>"$work/$system-$clients"
        done
    done
    for system in "${systems[@]}"; do
        read -r rps p50 p99 cpu < <(medians "$work/$system-$clients")
        printf '%-28s %8s %12s %10s %10s %12s\n' "${labels[$system]}" "$clients" "$rps" "$p50" "$p99" "$cpu"
        rps_of[$system-$clients]=$rps
    done
done
for clients in 1 50; do
    awk -v c="$clients" -v a="${rps_of[sidecar-$clients]}" -v s="${rps_of[serve-$clients]}" \
        -v r="${rps_of[redis-$clients]}" -v p="${rps_of[redis-plain-$clients]}" \
        'BEGIN { printf "at %s clients, the sidecar: %.2fx serve, %.2fx redis fsync always, %.2fx redis appendonly no\n", c, a / s, a / r, a / p }'
done
fetched="$(( $(metric counterctl_upstream_blocks_fetched_total) - fetched_before ))"
handed="$(( $(metric 'counterctl_requests_total{route="/counter/increment",status="200"}') - handed_before ))"
awk -v f="$fetched" -v h="$handed" \
    'BEGIN { printf "sidecar: %d IDs handed out with %d upstream requests: %.1f upstream requests per million IDs\n", h, f, f * 1e6 / h }'
echo "sidecar upstream errors: $(metric counterctl_upstream_errors_total)"
