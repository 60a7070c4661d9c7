"""Benchmark worker W2: per task, prints LINES log lines stamped with their send time
(`t=<ms since epoch, fractional>`), INTERVAL seconds apart, then completes. Persistent.
FLOOD=N instead prints N lines as fast as it can (the relay flood); RATE=R paces the lines at R
per second on a fixed schedule (the UI family)."""
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
w = sys.stdout.write


def run(task_id):
    if FLOOD:
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


time.sleep(WARMUP)
run(os.environ["TASK_ID"])
for line in sys.stdin:
    if line.strip():
        run(json.loads(line)["taskId"])
