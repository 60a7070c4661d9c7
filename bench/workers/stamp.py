"""Benchmark worker W2: per task, prints LINES log lines stamped with their send time
(`t=<ms since epoch, fractional>`), INTERVAL seconds apart, then completes. Persistent.
FLOOD=N instead prints N lines as fast as it can (the relay flood); RATE=R paces the lines at R
per second on a fixed schedule (the UI family). A task described "burn" burns a core for
BENCH_BURN_SECS (default 60) or until the runner is gone, then completes."""
import json
import os
import sys
import time

LINES = int(os.environ.get("BENCH_LINES", "20"))
INTERVAL = float(os.environ.get("BENCH_INTERVAL", "0.025"))
FLOOD = int(os.environ.get("BENCH_FLOOD", "0"))
# Lines per second on a fixed schedule instead of INTERVAL pauses (the UI family).
RATE = float(os.environ.get("BENCH_RATE", "0"))
# Seconds to wait before the first stamped line, so that all workers have started (a burst of
# interpreter starts on a small machine is not relay latency).
WARMUP = float(os.environ.get("BENCH_WARMUP", "0"))
BURN = float(os.environ.get("BENCH_BURN_SECS", "60"))
w = sys.stdout.write


def burn():
    runner, end = os.getppid(), time.monotonic() + BURN
    while time.monotonic() < end and os.getppid() == runner:
        for _ in range(10000):
            pass


def run(task_id, description):
    if description == "burn":
        burn()
    elif FLOOD:
        chunk = '{"type":"log","action":"flood"}\n' * 1000
        for _ in range(FLOOD // 1000):
            w(chunk)
        sys.stdout.flush()
    else:
        start = time.time()
        for i in range(LINES):
            w('{"type":"log","action":"t=%.3f"}\n' % (time.time() * 1000))
            sys.stdout.flush()
            if RATE:
                # On a fixed schedule, so the rate holds whatever a write costs.
                time.sleep(max(0.0, start + (i + 1) / RATE - time.time()))
            else:
                time.sleep(INTERVAL)
    w('{"type":"complete","todoId":"%s"}\n' % task_id)
    sys.stdout.flush()


if os.environ["TASK_DESCRIPTION"] != "burn":
    time.sleep(WARMUP)
run(os.environ["TASK_ID"], os.environ["TASK_DESCRIPTION"])
for line in sys.stdin:
    if line.strip():
        task = json.loads(line)
        run(task["taskId"], task["description"])
