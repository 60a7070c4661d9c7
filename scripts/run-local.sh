#!/usr/bin/env bash
# Starts a whole local swarmq cluster and runs a demo session in the terminal (and prints the
# dashboard's URL and the demo session's page):
# a private redis-server (unless REDIS_URL is set), one coordinator, two runners running the
# real workers/worker.py. No API key needed: without ANTHROPIC_API_KEY the planner and the
# worker run offline (and say so). Ctrl-C stops everything this script started.
#
#   scripts/run-local.sh [--once] [PROMPT]
#     --once   stop the cluster when the demo session ends (default: keep it running)
#   Env: PORT (default 3000), REDIS_URL, ANTHROPIC_API_KEY, SWARMQ_DEMO_AGENTS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

once=0
if [ "${1:-}" = "--once" ]; then once=1; shift; fi
prompt=${1:-"Plan a weekend trip to Lisbon: find flights; pick a hotel near Alfama; list five restaurants; draft a two-day itinerary"}
port=${PORT:-3000}
agents=${SWARMQ_DEMO_AGENTS:-3}

need() { command -v "$1" >/dev/null 2>&1 || { echo "run-local.sh: '$1' is required: $2" >&2; exit 1; }; }
need cargo "install Rust (>= 1.94) with rustup: https://rustup.rs"
need cc "apt-get install build-essential (some crates compile C)"
need python3 "apt-get install python3 python3-venv"
need curl "apt-get install curl"

pids=()
workdir=$(mktemp -d -t swarmq-local.XXXXXX)
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "== stopping (pids ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive -eq 0 ] && break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== Python virtualenv (.venv) with the worker's requirements"
. scripts/python-env.sh
ensure_python_env workers/requirements.txt

echo "== building the coordinator, runner and CLI (release; the first build takes several minutes on 2 cores)"
cargo build --release --quiet --bins -p swarmq-coordinator -p swarmq-runner -p swarmq-cli
bin=$root/target/release

if [ -z "${REDIS_URL:-}" ]; then
  need redis-server "apt-get install redis-server, or set REDIS_URL to an existing Redis"
  redis_port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$workdir" --save "" --appendonly yes \
    --logfile "$workdir/redis.log" &
  pids+=($!)
  export REDIS_URL="redis://127.0.0.1:$redis_port"
  for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "== private redis-server on port $redis_port (data in $workdir)"
fi

if [ -z "${ANTHROPIC_API_KEY:-}" ]; then
  echo "== OFFLINE DEMO: ANTHROPIC_API_KEY is not set, so the planner splits the prompt locally"
  echo "   and the workers walk through their tasks without calling a model."
fi

HOST=127.0.0.1 PORT=$port "$bin/swarmq-coordinator" 2>"$workdir/coordinator.log" &
pids+=($!)
for n in 1 2; do
  SWARMQ_WORKER_CMD="$python workers/worker.py" SWARMQ_WORKER_CWD="$root" SWARMQ_RUNNER_SLOTS=2 \
    SOCKET_URL="http://127.0.0.1:$port" \
    SWARMQ_WORKER_PASS_ENV="ANTHROPIC_API_KEY,ANTHROPIC_BASE_URL,WORKER_MODEL,WORKER_OFFLINE_STEP_SECS" \
    "$bin/swarmq-runner" 2>"$workdir/runner$n.log" &
  pids+=($!)
done
export SWARMQ_URL="http://127.0.0.1:$port"
ready=0
for _ in $(seq 1 100); do
  if curl -fsS "$SWARMQ_URL/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
if [ $ready -ne 1 ]; then
  echo "run-local.sh: the coordinator did not become ready; its log:" >&2
  tail -n 20 "$workdir/coordinator.log" >&2
  exit 1
fi
echo "== coordinator at $SWARMQ_URL, 2 runners (logs in $workdir)"
echo "== dashboard: $SWARMQ_URL/  (cluster: $SWARMQ_URL/cluster)"
echo "== demo session: $prompt"
status=0
id=$("$bin/swarmq" submit "$prompt" --agents "$agents")
echo "== watch it in a browser: $SWARMQ_URL/sessions/$id"
"$bin/swarmq" watch "$id" || status=$?
"$bin/swarmq" stats || true
if [ $once -eq 1 ]; then
  exit $status
fi
echo
echo "== the cluster keeps running: open $SWARMQ_URL/ or try  SWARMQ_URL=$SWARMQ_URL $bin/swarmq submit \"your prompt\" --agents 2 --watch"
echo "== Ctrl-C stops it"
wait
