#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (the Python
# requirements, the npm Socket.IO client), builds the binaries, then runs the Rust unit and
# integration tests (private redis-servers, real processes, real clients, headless Chromium for
# the dashboard — installed with apt-get when missing — and schemathesis fuzzing a coordinator
# against its own OpenAPI document) and pytest.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- NAME    # only Rust tests whose name contains NAME (no pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "test.sh: '$1' is required: $2" >&2; exit 1; }; }
need cargo "install Rust (>= 1.94) with rustup: https://rustup.rs"
need cc "apt-get install build-essential (some crates compile C)"
need python3 "apt-get install python3 python3-venv"
need node "apt-get install nodejs npm"
need npm "apt-get install npm"
need redis-server "apt-get install redis-server (the tests start their own private servers)"

echo "== installing test dependencies (.venv, tests/clients/node_modules)"
. scripts/python-env.sh
ensure_python_env tests/requirements.txt
npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
# The dashboard's browser tests drive Debian's Chromium (coordinator/tests/dashboard.rs).
if [ ! -x "${SWARMQ_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "== installing chromium (apt-get) for the dashboard's browser tests"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

filter=()
if [ "${1:-}" = "--" ] && [ -n "${2:-}" ]; then filter=("$2"); fi

echo "== building"
cargo build --workspace --bins --tests --quiet

echo "== rust tests"
cargo test --workspace --quiet --no-fail-fast -- "${filter[@]}"

if [ ${#filter[@]} -eq 0 ]; then
  echo "== fault injection (one run of each scenario; scripts/faults.sh runs more)"
  target/debug/swarmq-chaos --runs 1

  echo "== python tests"
  "$python" -m pytest workers/tests tests/deploy -q
fi
