"""A session watcher built on python-socketio, for the test suite.

    python3 watch.py URL SESSION_ID [--since N] [--timeout SECS]

Prints one JSON object per line (same shapes as watch.mjs). Exits 0 after session:complete.
"""
import argparse
import json
import sys
import threading

import socketio

EVENTS = [
    "task:created", "task:assigned", "task:completed", "agent:thinking", "agent:reasoning",
    "agent:terminated", "session:complete", "agent:stream_ready", "task:failed", "task:retry",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("session_id")
    parser.add_argument("--since", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--transport", choices=["websocket", "polling", "both"], default="websocket",
                        help="both: long-polling first, then the upgrade (the client's default)")
    args = parser.parse_args()

    lock = threading.RLock()
    last_seq = [args.since]
    seen = set()
    complete_seq = [None]
    done = threading.Event()
    sio = socketio.Client(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.5)

    def out(obj):
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def make_handler(name):
        # python-socketio runs each handler in its own thread, so events can arrive here out of
        # order: finish only once every seq up to session:complete's has been printed.
        def handler(data):
            seq = data.get("seq") if isinstance(data, dict) else None
            out({"type": "event", "event": name, "data": data})
            with lock:
                if isinstance(seq, int):
                    seen.add(seq)
                    last_seq[0] = max(last_seq[0], seq)
                if name == "session:complete":
                    complete_seq[0] = seq
                end = complete_seq[0]
                if end is not None and all(s in seen for s in range(args.since + 1, end + 1)):
                    done.set()
        return handler

    for name in EVENTS:
        sio.on(name, make_handler(name))

    @sio.event
    def connect():
        out({"type": "connect", "id": sio.sid})
        sio.emit("session:join", {"sessionId": args.session_id, "since": last_seq[0]},
                 callback=lambda ack: out({"type": "ack", "ack": ack}))

    @sio.event
    def disconnect(*_reason):
        out({"type": "disconnect"})

    transports = ["polling", "websocket"] if args.transport == "both" else [args.transport]
    sio.connect(args.url, transports=transports, wait_timeout=10)
    finished = done.wait(args.timeout)
    sio.disconnect()
    if not finished:
        out({"type": "timeout"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
