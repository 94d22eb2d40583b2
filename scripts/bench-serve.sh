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
cd "$repo_root"

seconds="${1:-10}"
rounds="${2:-3}"

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! command -v wrk >/dev/null; then
    echo "installing redis-server, redis-tools and wrk from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools wrk >/dev/null
fi

# COUNTERCTL_BENCH_BINARY measures a build you already have instead of the release build.
counterctl="${COUNTERCTL_BENCH_BINARY:-}"
if [[ -z $counterctl ]]; then
    cargo build --release --locked --bin counterctl
    counterctl="$repo_root/target/release/counterctl"
fi

work="$(mktemp -d -p "$repo_root/target" bench-serve.XXXXXX)"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
serve_port="$(free_port)"
redis_port="$(free_port)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# usage: wait_for_port PORT
wait_for_port() {
    for _ in $(seq 100); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

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
"$counterctl" serve --listen "127.0.0.1:$serve_port" --data-dir "$work/serve" "${serve_options[@]}" >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work" --save '' \
    --appendonly yes --appendfsync always --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
wait_for_port "$serve_port"
wait_for_port "$redis_port"

cat >"$work/increment.lua" <<EOF
wrk.method = "POST"
wrk.path = "/counter/increment?counter=bench"
$([[ -n $api_key ]] && echo "wrk.headers[\"x-api-key\"] = \"$api_key\"")
EOF

# usage: cpu_ticks PID -> user and system CPU time of the process so far, in clock ticks
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
ticks_per_second="$(getconf CLK_TCK)"

# usage: measure_serve CLIENTS -> "requests/s p50_ms p99_ms server_cpu_us_per_request"
measure_serve() {
    local output before after
    before="$(cpu_ticks "$serve_pid")"
    output="$(wrk --threads 1 --connections "$1" --duration "${seconds}s" --latency \
        --script "$work/increment.lua" "http://127.0.0.1:$serve_port")"
    after="$(cpu_ticks "$serve_pid")"
    awk -v ticks="$((after - before))" -v hz="$ticks_per_second" '
        function ms(value) {
            if (value ~ /us$/) return value / 1000
            if (value ~ /ms$/) return value + 0
            if (value ~ /s$/) return value * 1000
        }
        $1 == "50.000%" || $1 == "50%" { p50 = ms($2) }
        $1 == "99.000%" || $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        / requests in / { requests = $1 }
        /Non-2xx/ { errors = $NF }
        END {
            if (errors) { print "wrk saw " errors " non-2xx answers" > "/dev/stderr"; exit 1 }
            printf "%.0f %.3f %.3f %.1f\n", rps, p50, p99, ticks / hz * 1e6 / requests
        }' <<<"$output"
}

# usage: measure_redis CLIENTS -> "requests/s p50_ms p99_ms server_cpu_us_per_request"
measure_redis() {
    # About as many requests as counterctl answered in the same time at this concurrency.
    local requests=$(( $2 * seconds > 10000 ? $2 * seconds : 10000 ))
    local output before after
    before="$(cpu_ticks "$redis_pid")"
    output="$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -t incr -c "$1" -n "$requests" --csv)"
    after="$(cpu_ticks "$redis_pid")"
    tr -d '"' <<<"$output" | awk -F , -v ticks="$((after - before))" -v hz="$ticks_per_second" -v requests="$requests" \
        'NR == 2 { printf "%.0f %.3f %.3f %.1f\n", $2, $5, $7, ticks / hz * 1e6 / requests }'
}

# Warm up both (page cache, connections, the database file and the AOF).
measure_serve 50 >/dev/null
redis-benchmark -h 127.0.0.1 -p "$redis_port" -t incr -c 50 -n 20000 -q >/dev/null

# usage: median FILE COLUMN
median() {
    sort -n -k "$2" "$1" | awk -v column="$2" '{ values[NR] = $column } END { print values[int((NR + 1) / 2)] }'
}

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
        measure_redis "$clients" "$(tail -1 "$work/serve-$clients" | cut -d' ' -f1)" >>"$work/redis-$clients"
    done
    for system in serve redis; do
        read -r rps p50 p99 cpu < <(paste -d' ' <(median "$work/$system-$clients" 1) \
            <(median "$work/$system-$clients" 2) <(median "$work/$system-$clients" 3) \
            <(median "$work/$system-$clients" 4))
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
