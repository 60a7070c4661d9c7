#!/usr/bin/env bash
# The fault-injection suite (docs/reliability.md): every scenario, RUNS times each, against the
# built binaries, a private Redis and real clients. Prints the reliability table and exits
# non-zero if any invariant was violated. Takes about 40 s per run of all seven scenarios.
#
#   scripts/faults.sh [RUNS]        (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/python-env.sh
ensure_python_env tests/requirements.txt
npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
cargo build --workspace --bins --quiet
mkdir -p target
exec target/debug/swarmq-chaos --runs "$runs" --report target/reliability.md
