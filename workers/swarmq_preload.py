"""swarmq preloaded worker server (stdlib only): import once, fork one child per agent.

The runner starts one of these per host when SWARMQ_WORKER_START=preload and the worker command
is a Python script or ``-m module`` (docs/worker-protocol.md, "Start modes"):

    python swarmq_preload.py --socket DIR/sock --script workers/worker.py [--preload a,b]
    python swarmq_preload.py --socket DIR/sock --module pkg.worker [--preload a,b] [-- ARGS]

It imports the modules to preload once (the worker's own helpers, the Anthropic SDK, ...), creates
nothing network-bound, prints ``ready`` on stdout and serves spawn requests on the Unix socket.
One connection per agent: the runner sends one JSON line ``{"env": {...}, "nice": N}`` and, with
its first bytes, the agent's stdin, stdout and stderr pipe ends as SCM_RIGHTS descriptors. The
server forks a child that becomes its own process group leader, puts the descriptors on 0, 1, 2,
gets exactly the given environment and nice value, and runs the worker as ``python script`` or
``python -m module`` would. The server answers ``pid N`` at once and ``exit S`` (the raw wait
status) when the child is gone. It exits when its stdin closes (the runner is gone, even
SIGKILLed), ending its children's process groups first (SIGTERM, then SIGKILL after 2 s): nobody
would read their output any more, and their agents go to other runners when the lease runs out.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.machinery
import io
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import time
import types
from typing import Optional

#: Largest spawn request accepted (the environment, with the task description in it).
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# How long children get to end on SIGTERM when the runner is gone, before SIGKILL.
END_GRACE_SECS = 2.0


def log(msg: str) -> None:
    sys.stderr.write(f"swarmq-preload: {msg}\n")
    sys.stderr.flush()


def parse_args(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="swarmq_preload")
    p.add_argument("--socket", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--script")
    target.add_argument("--module")
    p.add_argument("--preload", default="", help="comma-separated modules to import once")
    p.add_argument("args", nargs="*", help="the worker's own arguments")
    return p.parse_args(argv)


def preload(modules: str) -> None:
    """Imports what the workers need (``module``), or imports and calls a warm-up function
    (``module:function``); one that fails is reported, not fatal (the worker then meets the same
    error itself, as a cold start would). Then freezes the heap: the garbage collector no longer
    walks (and so writes to) the preloaded objects, which keeps their pages shared after fork."""
    for entry in filter(None, (m.strip() for m in modules.split(","))):
        name, _, function = entry.partition(":")
        try:
            module = importlib.import_module(name)
            if function:
                getattr(module, function)()
        except Exception as err:  # noqa: BLE001 - any import-time failure
            log(f"could not preload {entry}: {type(err).__name__}: {err}")
    gc.collect()
    gc.freeze()


class Request:
    """One spawn request: the child's environment, nice value and stdio descriptors."""

    def __init__(self, env: dict, nice: int, fds: list) -> None:
        self.env = env
        self.nice = nice
        self.fds = fds


def read_request(conn: socket.socket) -> Optional[Request]:
    """The JSON line and the three descriptors sent with its first bytes; None if malformed."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    buf = bytearray(data)
    while b"\n" not in buf and len(buf) < MAX_REQUEST_BYTES:
        more = conn.recv(65536)
        if not more:
            break
        buf += more
    try:
        msg = json.loads(bytes(buf).split(b"\n", 1)[0])
        env = {str(k): str(v) for k, v in msg["env"].items()}
        nice = int(msg.get("nice", 0))
    except (ValueError, KeyError, AttributeError, TypeError):
        msg = None
    if msg is None or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    return Request(env, nice, fds)


class Server:
    """Accepts spawn requests, forks children, reports their pids and exit statuses."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4096)  # a burst of starts may queue up; the kernel caps it
        self.children: dict = {}  # pid -> the connection its exit status goes to
        wake_r, self.wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.wake_r = wake_r
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(wake_r, selectors.EVENT_READ, "child")
        self.sel.register(0, selectors.EVENT_READ, "runner")

    def serve(self) -> Optional[Request]:
        """Serves until the runner is gone (returns None); in a forked child, returns its request
        once the server's own descriptors are closed."""
        while True:
            for key, _ in self.sel.select():
                if key.data == "runner" and not os.read(0, 4096):
                    self.end_children()
                    return None
                if key.data == "child":
                    self.reap()
                if key.data == "accept":
                    child = self.accept()
                    if child is not None:
                        return child

    def accept(self) -> Optional[Request]:
        conn, _ = self.listener.accept()
        try:
            req = read_request(conn)
        except OSError as err:
            log(f"spawn request lost: {err}")
            req = None
        if req is None:
            conn.close()
            return None
        pid = os.fork()
        if pid == 0:
            self.close_in_child(conn)
            return req
        for fd in req.fds:
            os.close(fd)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        except OSError:
            pass
        self.children[pid] = conn
        self.send(pid, f"pid {pid}\n")
        self.reap()
        return None

    def send(self, pid: int, line: str) -> None:
        conn = self.children.get(pid)
        if conn is None:
            return
        try:
            conn.sendall(line.encode())
        except OSError:
            pass  # the runner stopped waiting for this child

    def reap(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send(pid, f"exit {status}\n")
            conn = self.children.pop(pid, None)
            if conn is not None:
                conn.close()

    def end_children(self) -> None:
        """The runner is gone (it never closes this pipe while it lives: it kills the server):
        nobody reads the children's output or learns their exits any more, and their agents go
        to other runners once the lease runs out. A worker that ignores its stdin's end would
        run on, unwatched — so each child's group gets SIGTERM, and SIGKILL after a grace."""
        groups = list(self.children)  # each child leads its own group
        signal_groups(groups, signal.SIGTERM)
        deadline = time.monotonic() + END_GRACE_SECS
        while self.children and time.monotonic() < deadline:
            time.sleep(0.05)
            self.reap()
        # Every group, even one whose leader ended: what it started may have ignored SIGTERM.
        signal_groups(groups, signal.SIGKILL)

    def close_in_child(self, conn: socket.socket) -> None:
        """In a new child: nothing of the server survives but the modules it imported."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.sel.close()
        self.listener.close()
        conn.close()
        for other in self.children.values():
            other.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)


def signal_groups(groups: list, sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass  # the whole group is gone already


class Script:
    """The worker script, compiled once by the server: a child that ran it with ``runpy`` would
    read and compile it again (~4 ms of CPU per agent for ``workers/worker.py``). A child whose
    script has changed on disk since (or cannot be read, or did not compile) runs it with
    ``runpy`` instead, so it sees what a cold ``python script.py`` would."""

    def __init__(self, path: str) -> None:
        self.path = path
        # What `python script.py` makes `__file__` and the code's file name (Python >= 3.9).
        self.file = os.path.abspath(path)
        self.stamp: Optional[tuple] = None
        self.code = None
        try:
            stamp = self.current_stamp()
            with io.open_code(self.file) as f:
                source = f.read()
            # dont_inherit: the script is compiled as `python` would, without this file's
            # `from __future__` flags.
            self.code = compile(source, self.file, "exec", dont_inherit=True)
            self.stamp = stamp
        except (OSError, SyntaxError, ValueError):
            pass  # each child meets the error itself, as a cold start would

    def current_stamp(self) -> tuple:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def run(self) -> None:
        """Runs the script as ``__main__``, as ``python script.py`` (or ``runpy``) would."""
        try:
            fresh = self.code is not None and self.current_stamp() == self.stamp
        except OSError:
            fresh = False
        if not fresh:
            runpy.run_path(self.path, run_name="__main__")
            return
        main = types.ModuleType("__main__")
        main.__dict__.update(
            __file__=self.file,
            __cached__=None,
            __loader__=importlib.machinery.SourceFileLoader("__main__", self.file),
            __package__=None,
            __spec__=None,
        )
        sys.modules["__main__"] = main
        exec(self.code, main.__dict__)  # noqa: S102 - the worker script, as python would run it


def become_worker(req: Request, args: argparse.Namespace) -> None:
    """In the child: own process group, the agent's stdio and environment, then the worker."""
    os.setpgid(0, 0)
    if req.nice > 0:  # first: the server runs at the runner's priority, the worker below it
        os.setpriority(os.PRIO_PROCESS, 0, req.nice)
    for target, fd in enumerate(req.fds):
        os.dup2(fd, target)
    for fd in req.fds:
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(req.env)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.script:
        sys.argv = [args.script, *args.args]
        sys.path[0] = os.path.dirname(os.path.abspath(args.script))
        args.compiled.run()
    else:
        sys.argv = [args.module, *args.args]
        sys.path[0] = os.getcwd()
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)


def main(argv: list) -> tuple:
    """Preloads and serves; returns (request, args) in a forked child, (None, args) when done."""
    args = parse_args(argv)
    if args.script:
        # What `python script.py` puts first on sys.path, so the script's helpers preload too.
        sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    else:
        sys.path.insert(0, os.getcwd())
    args.compiled = Script(args.script) if args.script else None
    preload(args.preload)
    server = Server(args.socket)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    request = server.serve()
    if request is None:
        remove_private_dir(args.socket)
    return request, args


def remove_private_dir(sock: str) -> None:
    """The runner is gone (maybe killed, without cleaning up): remove the private directory it
    made for this server — the socket and this file — if that is where they are."""
    directory = os.path.dirname(os.path.abspath(sock))
    if not os.path.basename(directory).startswith("swarmq-preload-"):
        return
    for name in os.listdir(directory):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass


def exit_status(exc: BaseException) -> int:
    """The status `python` gives an uncaught exception (after reporting it as it would)."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        sys.stderr.write(f"{code}\n")
        return 1
    sys.excepthook(type(exc), exc, exc.__traceback__)
    return 1


def finish(status: int) -> None:
    """Ends a child as the interpreter would — non-daemon threads joined, atexit handlers run,
    stdio flushed — but without tearing down the thousands of preloaded modules one by one:
    that costs as much CPU as importing the SDK (~0.5 s) and writes to every shared page."""
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize does first
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120  # as Python does when flushing stdout fails at exit
    os._exit(status)


if __name__ == "__main__":
    try:
        request, arguments = main(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit(130)
    # Outside the server's frames: the worker's exceptions and exit codes behave as in a cold
    # `python script.py`.
    if request is not None:
        try:
            become_worker(request, arguments)
            STATUS = 0
        except KeyboardInterrupt as interrupted:
            exit_status(interrupted)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            STATUS = 130
        except BaseException as exc:  # noqa: BLE001 - reported and turned into the exit status
            STATUS = exit_status(exc)
        finish(STATUS)
