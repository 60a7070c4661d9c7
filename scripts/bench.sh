#!/usr/bin/env bash
# The benchmark suite (docs/benchmarks.md): release binaries, private Redis, baselines measured
# in the same run. Arguments go to swarmq-bench (e.g. --repeat 5 --tasks 500 --only W1).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python-env.sh
ensure_python_env tests/requirements.txt
cargo build --release --bins --quiet
exec target/release/swarmq-bench "$@"
