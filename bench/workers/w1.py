"""Benchmark worker W1: prints 10 log lines, then completes. One-shot by default (exits after
its task, so every TODO pays an interpreter start); with --persistent it serves every next task
from stdin (one process per agent, as workers/worker.py does)."""
import json
import os
import sys

PERSISTENT = "--persistent" in sys.argv
w = sys.stdout.write


def run(task_id):
    for i in range(10):
        w('{"type":"log","action":"step %d"}\n' % i)
    w('{"type":"complete","todoId":"%s","result":"ok"}\n' % task_id)
    sys.stdout.flush()


run(os.environ["TASK_ID"])
if PERSISTENT:
    for line in sys.stdin:
        if line.strip():
            run(json.loads(line)["taskId"])
