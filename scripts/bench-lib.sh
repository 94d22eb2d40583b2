# Sourced by the HTTP benchmarks (bench-serve.sh, bench-sidecar.sh), after lib.sh: the
# setup, ports, CPU accounting and the load generators' figures.

# usage: bench_setup NAME [SECONDS_PER_RUN [ROUNDS]]
# Sets `seconds` and `rounds` (default 10 s, 3), installs the tools, builds the release
# binary as `counterctl` (COUNTERCTL_BENCH_BINARY measures a build you already have
# instead), makes the work directory `work` under target/, and stops every process in
# `pids` and removes `work` when the script exits.
bench_setup() {
    seconds="${2:-10}"
    rounds="${3:-3}"
    ensure_bench_tools
    counterctl="${COUNTERCTL_BENCH_BINARY:-}"
    if [[ -z $counterctl ]]; then
        cargo build --release --locked --bin counterctl
        counterctl="$repo_root/target/release/counterctl"
    fi
    work="$(mktemp -d -p "$repo_root/target" "bench-$1.XXXXXX")"
    # serve's history markers and the sidecar's ledger stay in the work directory.
    export COUNTERCTL_STATE_DIR="$work/state"
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}

# Installs redis-server, redis-tools and wrk from Debian's packages when missing (root).
ensure_bench_tools() {
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! command -v wrk >/dev/null; then
        echo "installing redis-server, redis-tools and wrk from Debian's packages" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools wrk >/dev/null
    fi
}

# usage: start_redis NAME PORT DURABILITY...  (e.g. --appendonly yes --appendfsync always)
# Starts redis-server with its data in $work/NAME, logging to $work/NAME.log; sets
# `started_pid` and adds it to `pids`.
start_redis() {
    local name="$1" port="$2"
    shift 2
    mkdir -p "$work/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$work/$name" --save '' "$@" --daemonize no \
        >"$work/$name.log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# usage: wait_for_port PORT
wait_for_port() {
    for _ in $(seq 100); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# usage: cpu_ticks PID -> user and system CPU time of the process so far, in clock ticks
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
ticks_per_second="$(getconf CLK_TCK)"

# usage: measure_wrk PID CLIENTS URL LUA_SCRIPT -> "requests/s p50_ms p99_ms cpu_us_per_request"
# (the CPU time of process PID, the server, per request)
measure_wrk() {
    local output before after
    before="$(cpu_ticks "$1")"
    output="$(wrk --threads 1 --connections "$2" --duration "${seconds}s" --latency --script "$4" "$3")"
    after="$(cpu_ticks "$1")"
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

# usage: measure_redis PID PORT CLIENTS REQUESTS -> "requests/s p50_ms p99_ms cpu_us_per_request"
measure_redis() {
    local output before after
    before="$(cpu_ticks "$1")"
    output="$(redis-benchmark -h 127.0.0.1 -p "$2" -t incr -c "$3" -n "$4" --csv)"
    after="$(cpu_ticks "$1")"
    tr -d '"' <<<"$output" | awk -F , -v ticks="$((after - before))" -v hz="$ticks_per_second" -v requests="$4" \
        'NR == 2 { printf "%.0f %.3f %.3f %.1f\n", $2, $5, $7, ticks / hz * 1e6 / requests }'
}

# usage: medians FILE -> the median of each of the four columns
medians() {
    local column
    for column in 1 2 3 4; do
        sort -n -k "$column" "$1" | awk -v column="$column" '{ values[NR] = $column } END { printf "%s ", values[int((NR + 1) / 2)] }'
    done
    echo
}
