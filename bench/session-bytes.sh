#!/usr/bin/env bash
# Measures the Redis memory one finished session takes (MEMORY USAGE summed over its keys),
# with the real default worker in offline mode: N sessions of 4 TODOs and 2 agents.
#   bench/session-bytes.sh [N]     (needs the debug binaries: cargo build --bins)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --dir "$dir" --save "" --appendonly no --daemonize yes --logfile "$dir/r.log"
cport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
py=$(python3 -c 'import sys; print(sys.executable)')
REDIS_URL=redis://127.0.0.1:$port HOST=127.0.0.1 PORT=$cport SWARMQ_PLANNER=local SWARMQ_CREATE_RATE_PER_MIN=0 \
  target/debug/swarmq-coordinator 2>"$dir/c.log" & cpid=$!
REDIS_URL=redis://127.0.0.1:$port SWARMQ_WORKER_CMD="$py workers/worker.py" SWARMQ_RUNNER_SLOTS=4 \
  WORKER_OFFLINE_STEP_SECS=0 SWARMQ_WORKER_PASS_ENV=WORKER_OFFLINE_STEP_SECS \
  target/debug/swarmq-runner 2>"$dir/r1.log" & rpid=$!
trap 'kill $cpid $rpid 2>/dev/null; redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$cport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
ids=()
for i in $(seq 1 "$n"); do
  ids+=("$(curl -fsS -XPOST "http://127.0.0.1:$cport/api/sessions" -H 'content-type: application/json' \
    -d "{\"prompt\":\"find flights $i; pick a hotel; list restaurants; draft an itinerary\",\"agentCount\":2}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["sessionId"])')")
done
for id in "${ids[@]}"; do
  for _ in $(seq 1 300); do
    s=$(redis-cli -p "$port" hget "swarmq:{$id}:session" status)
    [ "$s" = completed ] && break; sleep 0.1
  done
done
total=0; events=0
for id in "${ids[@]}"; do
  for key in $(redis-cli -p "$port" --scan --pattern "swarmq:{$id}:*"); do
    b=$(redis-cli -p "$port" memory usage "$key" samples 0); total=$((total + b))
  done
  events=$((events + $(redis-cli -p "$port" xlen "swarmq:{$id}:events")))
done
echo "sessions=$n  bytes/session=$((total / n))  events/session=$((events / n))"
