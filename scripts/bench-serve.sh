#!/usr/bin/env bash
# Measures `counterctl serve` against Redis with the same durability (every write
# fsync'd before it is acknowledged: `appendonly yes`, `appendfsync always`), on this
# machine, in one run: requests per second, p50/p99 latency and the server's CPU time
# (user + system) per request, at 1 and 50 concurrent clients. counterctl is driven by
# wrk (POST increments), Redis by `redis-benchmark -t incr`. Both servers keep their
# data in the same directory, so on the same disk.
#
# Installs redis-server, redis-tools and wrk from Debian's packages when missing (root).
# The machine may be shared, so each measurement alternates the two systems for a few
# rounds and reports medians.
#
# serve runs as in production: with an API key (`--api-key-file`; every request sends
# `x-api-key`) and its header and idle timeouts on (they always are).
# COUNTERCTL_BENCH_API_KEY= (empty) runs it without a key, to measure what the key check
# costs, or to measure a build from before keys existed (COUNTERCTL_BENCH_BINARY; the
# timeouts cannot be turned off, so their cost is measured against such a build).
# COUNTERCTL_BENCH_ACCESS_LOG=1 adds --access-log, written to a file in the work dir.
# Usage: scripts/bench-serve.sh [SECONDS_PER_RUN [ROUNDS]]   (default 10 s, 3 rounds)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bench-lib.sh"
cd "$repo_root"

bench_setup serve "$@"
serve_port="$(free_port)"
redis_port="$(free_port)"

api_key="${COUNTERCTL_BENCH_API_KEY-bench-0123456789abcdef0123456789}"
serve_options=()
if [[ -n $api_key ]]; then
    if [[ ! $api_key =~ ^[A-Za-z0-9._-]+$ ]]; then
        echo "COUNTERCTL_BENCH_API_KEY: use letters, digits and . _ - (it goes into wrk's Lua script)" >&2
        exit 2
    fi
    printf '%s\n' "$api_key" >"$work/api-key"
    serve_options+=(--api-key-file "$work/api-key")
fi
if [[ -n ${COUNTERCTL_BENCH_ACCESS_LOG:-} ]]; then
    serve_options+=(--access-log)
fi
mkdir -m 700 "$work/serve"
"$counterctl" serve --listen "127.0.0.1:$serve_port" --data-dir "$work/serve" "${serve_options[@]}" >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
start_redis redis "$redis_port" --appendonly yes --appendfsync always
redis_pid=$started_pid
wait_for_port "$serve_port"
wait_for_port "$redis_port"

cat >"$work/increment.lua" <<EOF
wrk.method = "POST"
wrk.path = "/counter/increment?counter=bench"
$([[ -n $api_key ]] && echo "wrk.headers[\"x-api-key\"] = \"$api_key\"")
EOF

# usage: measure_serve CLIENTS -> "requests/s p50_ms p99_ms server_cpu_us_per_request"
measure_serve() {
    measure_wrk "$serve_pid" "$1" "http://127.0.0.1:$serve_port" "$work/increment.lua"
}

# Warm up both (page cache, connections, the database file and the AOF).
measure_serve 50 >/dev/null
redis-benchmark -h 127.0.0.1 -p "$redis_port" -t incr -c 50 -n 20000 -q >/dev/null

echo
echo "counterctl serve vs redis-server (appendonly yes, appendfsync always)"
echo "$rounds alternating rounds of ${seconds}s per system and concurrency; medians"
echo "$(nproc) cores, $(uname -r), data in $work ($(df --output=source "$work" | tail -1))"
printf '%-24s %8s %12s %10s %10s %12s\n' system clients requests/s p50_ms p99_ms cpu_us/req
declare -A serve_rps redis_rps
for clients in 1 50; do
    : >"$work/serve-$clients" && : >"$work/redis-$clients"
    for _ in $(seq "$rounds"); do
        measure_serve "$clients" >>"$work/serve-$clients"
        # About as many requests as counterctl answered in the same time at this concurrency.
        served="$(tail -1 "$work/serve-$clients" | cut -d' ' -f1)"
        measure_redis "$redis_pid" "$redis_port" "$clients" "$(( served * seconds > 10000 ? served * seconds : 10000 ))" \
            >>"$work/redis-$clients"
    done
    for system in serve redis; do
        read -r rps p50 p99 cpu < <(medians "$work/$system-$clients")
        label="counterctl serve (wrk)" && [[ $system == redis ]] && label="redis INCR (benchmark)"
        printf '%-24s %8s %12s %10s %10s %12s\n' "$label" "$clients" "$rps" "$p50" "$p99" "$cpu"
        if [[ $system == serve ]]; then serve_rps[$clients]=$rps; else redis_rps[$clients]=$rps; fi
    done
done
for clients in 1 50; do
    awk -v c="$clients" -v s="${serve_rps[$clients]}" -v r="${redis_rps[$clients]}" \
        'BEGIN { printf "throughput ratio counterctl/redis at %s clients: %.2f\n", c, s / r }'
done
echo "serve: $([[ -n $api_key ]] && echo "with an API key" || echo "without an API key")$([[ -n ${COUNTERCTL_BENCH_ACCESS_LOG:-} ]] && echo ", --access-log: $(wc -l <"$work/serve.log") lines")"
echo "counter after the runs: $(curl -s -H "x-api-key: $api_key" "http://127.0.0.1:$serve_port/counter/value?counter=bench")"
