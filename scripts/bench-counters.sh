#!/usr/bin/env bash
# Measures `counterctl counters import` of COUNTERS counters (default 10,000): into a fresh
# DynamoDB table on moto, into a `serve` data directory with serve stopped, and with serve
# running on it; then the same import again, which changes nothing. Release build.
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
counters="${COUNTERS:-10000}"
start_moto
cargo build --locked --release --quiet
counterctl="$repo_root/target/release/counterctl"
work="$(mktemp -d -t bench-counters.XXXXXX)"
serve_pid=""
trap 'kill "$serve_pid" 2>/dev/null; kill "$moto_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work" "$moto_log"' EXIT

python3 - "$counters" >"$work/counters.jsonl" <<'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"counter": f"tenant-{i:06}", "value": 1000 + i}, separators=(",", ":")))
EOF

export AWS_ENDPOINT_URL="$COUNTERCTL_TEST_MOTO_URL" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
python3 - <<'EOF'
import boto3, os
boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1").create_table(
    TableName="BenchCounters", BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
EOF

# usage: timed LABEL counterctl-args...
timed() {
    local label="$1"
    shift
    local started ended
    started="$(date +%s.%N)"
    "$counterctl" counters import "$work/counters.jsonl" --output json "$@" >"$work/report.json"
    ended="$(date +%s.%N)"
    python3 - "$label" "$started" "$ended" "$counters" "$work/report.json" <<'EOF'
import json, sys
label, started, ended, counters, report = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
seconds = ended - started
print(f"{label:<40} {seconds:7.2f} s  {counters / seconds:9.0f} counters/s  {open(report).read().strip()}")
EOF
}

mkdir "$work/stopped" "$work/running"
echo "import of $counters counters ($(nproc) cores)"
timed "DynamoDB (moto), fresh table" --table BenchCounters
timed "DynamoDB (moto), again" --table BenchCounters
timed "serve data dir, serve stopped" --data-dir "$work/stopped"
timed "serve data dir, again" --data-dir "$work/stopped"
"$counterctl" serve --data-dir "$work/running" --listen 127.0.0.1:0 >/dev/null &
serve_pid=$!
for _ in $(seq 100); do [[ -S "$work/running/admin.sock" ]] && break; sleep 0.05; done
timed "serve data dir, serve running" --data-dir "$work/running"
timed "serve data dir, serve running, again" --data-dir "$work/running"
