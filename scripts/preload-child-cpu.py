#!/usr/bin/env python3
"""CPU of one preloaded agent: workers/worker.py online, forked from a preloaded server, one
streamed call against workers/tests/fake_anthropic.py, then stdin closed.

    .venv/bin/python scripts/preload-child-cpu.py [--agents 40] [--profile DIR]

Preloads as the worker server does (`swarmq_preload.preload`, the runner's default
SWARMQ_PRELOAD_MODULES, the script compiled once), then forks the agents one after the other and
reports per agent, median and minimum:
- in-process: `time.process_time()` in the child from just after the fork (before
  `become_worker`) to its exit (`finish`, after atexit handlers);
- whole life: the child's user + system time from `wait4` (the fork's copy-on-write faults, the
  interpreter's exit included), and its minor page faults;
- start: the child's in-process CPU when it wrote the line announcing its request (`Calling …`:
  about to send it), and the one after the model's first event (`… is responding`: request
  sent, connection made, answer's headers and first event parsed — the agent is working).
With --profile DIR, each child also writes a cProfile to DIR/child-N.prof. The server's socket and
the runner are left out: this measures the child, not the plumbing. docs/benchmarks.md, PRELOAD.
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = os.path.join(ROOT, "workers")
MODULES = "swarmq_worker,anthropic,worker:preload"


def start_fake() -> tuple:
    """The fake Messages API in its own process (a thread here would be forked with us)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from fake_anthropic import FakeAnthropic; "
        "f = FakeAnthropic().start(); print(f.url, f.api_key, flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, os.path.join(WORKERS, "tests")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url, key = proc.stdout.readline().split()
    return proc, url, key


def agent_env(url: str, key: str) -> dict:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
        "SESSION_ID": "5f0c7a52-8d1e-4d7e-9a59-0a4c1b2f3e01",
        "AGENT_ID": "0b7e8d2c-aaaa-bbbb-cccc-000000000001", "TASK_ID": "todo-1",
        "TASK_DESCRIPTION": "x " * 80, "SOCKET_URL": "", "E2B_API_KEY": "", "DEDALUS_API_KEY": "",
        "ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": url,
    }


def child(sp, args, env: dict, fds: list, report: int, profile: str) -> None:
    """In the forked agent: measure, become the worker, end as the server's children do."""
    t0 = time.process_time()
    import swarmq_worker as sw

    write_line, marks = sw._write_line, {}  # noqa: SLF001 - the probe for the start figures

    def probe(line: bytes) -> None:
        for key, text in ((0, b'"Calling '), (1, b' is responding"')):
            if key not in marks and text in line:
                marks[key] = time.process_time() - t0
        write_line(line)

    sw._write_line = probe  # noqa: SLF001
    atexit.register(
        lambda: os.write(report, f"{time.process_time() - t0} {marks.get(0, 0)} {marks.get(1, 0)}\n".encode())
    )
    if profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)
        atexit.register(lambda: prof.dump_stats(profile))
        prof.enable()
    try:
        sp.become_worker(sp.Request(env, 0, fds), args)
        status = 0
    except BaseException as exc:  # noqa: BLE001 - as the server's main block does
        status = sp.exit_status(exc)
    sp.finish(status)


def run_agent(sp, args, env: dict, profile: str) -> tuple:
    """CPU ms of one forked agent: in-process to its exit, to its request, to the model's first
    event; whole life (wait4); and its minor page faults."""
    (in_r, in_w), (out_r, out_w), (err_r, err_w), (rep_r, rep_w) = (os.pipe() for _ in range(4))
    pid = os.fork()
    if pid == 0:
        for fd in (in_w, out_r, err_r, rep_r):
            os.close(fd)
        child(sp, args, dict(env), [in_r, out_w, err_w], rep_w, profile)
    for fd in (in_r, out_w, err_w, rep_w, in_w):  # stdin closed: one task, then exit
        os.close(fd)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err, os.fdopen(rep_r, "rb") as rep:
        stdout, _, measured = out.read(), err.read(), rep.read().split()
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or b'"complete"' not in stdout:
        sys.exit(f"agent failed (status {status}): {stdout.decode()[-500:]}")
    inproc, request, responding = (float(v) * 1000 for v in measured)
    whole = (usage.ru_utime + usage.ru_stime) * 1000
    return inproc, request, responding, whole, usage.ru_minflt, usage.ru_stime * 1000


def main() -> None:
    opts = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    opts.add_argument("--agents", type=int, default=40)
    opts.add_argument("--profile", default="")
    opts = opts.parse_args()
    if opts.profile:
        os.makedirs(opts.profile, exist_ok=True)
    os.chdir(ROOT)
    fake, url, key = start_fake()
    sys.path[:0] = [WORKERS]
    import swarmq_preload as sp

    args = sp.parse_args(["--socket", "unused", "--script", "workers/worker.py"])
    args.compiled = sp.Script(args.script) if hasattr(sp, "Script") else None
    cpu = time.process_time()
    sp.preload(MODULES)
    print(f"server: preload {1000 * (time.process_time() - cpu):.0f} ms of CPU")
    env, rows = agent_env(url, key), []
    for i in range(opts.agents):
        profile = os.path.join(opts.profile, f"child-{i}.prof") if opts.profile else ""
        rows.append(run_agent(sp, args, env, profile))
    fake.stdin.close()
    fake.wait()
    columns = ("in-process, whole life", "fork → about to send", "fork → first model event", "whole life (wait4)")
    for col, name in enumerate((*columns, "minor page faults")):
        values = sorted(r[col] for r in rows)
        print(f"{name:26} median {values[len(values) // 2]:8.1f}  min {values[0]:8.1f}")
    system = sum(r[5] for r in rows) / sum(r[3] for r in rows)
    print(f"system time: {100 * system:.0f} % of the agents' whole-life CPU")


if __name__ == "__main__":
    main()
