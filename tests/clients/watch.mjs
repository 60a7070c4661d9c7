// A session watcher built on the official socket.io-client, for the test suite.
//
//   node watch.mjs URL SESSION_ID [--since N] [--plain] [--timeout SECS] [--transport websocket|polling|both]
//                  [--rooms N] [--garbage] [--token T] [--slow MS]
//
// Prints one JSON object per line on stdout: {"type":"connect"}, {"type":"ack", ...},
// {"type":"event","event":NAME,"data":PAYLOAD}, {"type":"disconnect","reason":...},
// {"type":"evicted", ...} when the server dropped it for not keeping up.
// --slow MS blocks the client for MS ms after every event (a reader slower than the session).
// Joins with {sessionId, since} (or the plain id with --plain). On reconnect it re-joins with the
// last seq it saw, so it never misses an event. Exits 0 after session:complete, 1 on timeout.
import { io } from "socket.io-client";

// process.exit() drops whatever stdout has not yet handed to the pipe (writes to a pipe are
// asynchronous in Node): exit once what was written has been flushed.
function exitFlushed(code) {
  process.stdout.write("", () => process.exit(code));
}

const [url, sessionId, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : dflt;
};
const flag = (name) => rest.includes(name);
let lastSeq = Number(opt("--since", "0"));
const plain = flag("--plain");
const timeout = Number(opt("--timeout", "60")) * 1000;
// "both" is the client's default: long-polling first, then the upgrade to a websocket.
const transport = opt("--transport", "websocket");
const transports = transport === "both" ? ["polling", "websocket"] : [transport];
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const token = opt("--token", undefined);
const socket = io(url, {
  transports, reconnectionDelay: 100, reconnectionDelayMax: 500,
  ...(token ? { auth: { token } } : {}),
});
const EVENTS = [
  "task:created", "task:assigned", "task:completed", "agent:thinking", "agent:reasoning",
  "agent:terminated", "session:complete", "agent:stream_ready", "task:failed", "task:retry",
];
const slow = Number(opt("--slow", "0"));
const pause = new Int32Array(new SharedArrayBuffer(4));
for (const event of EVENTS) {
  socket.on(event, (data) => {
    if (slow > 0) Atomics.wait(pause, 0, 0, slow);
    if (typeof data?.seq === "number") lastSeq = Math.max(lastSeq, data.seq);
    out({ type: "event", event, data });
    if (event === "session:complete") {
      setTimeout(() => { socket.close(); exitFlushed(0); }, 200);
    }
  });
}
socket.on("connect", () => {
  out({ type: "connect", id: socket.id });
  if (flag("--garbage")) {
    // Hostile inputs first: none of them may hurt this (or any other) connection.
    for (const bad of [42, null, {}, [1, 2], { sessionId: 7 }, { sessionId: "x", since: -1 }, "not-a-uuid"]) {
      socket.emit("session:join", bad, (ack) => out({ type: "garbage-ack", ack }));
    }
    socket.emit("no:such:event", "whatever");
  }
  const extra = Number(opt("--rooms", "0"));
  for (let i = 0; i < extra; i++) {
    const fake = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
    socket.emit("session:join", { sessionId: fake, since: 0 });
  }
  if (plain) {
    socket.emit("session:join", sessionId);
  } else {
    join();
  }
});
// Joins with the last seq seen; a join refused for a passing reason ("try again": storage
// unavailable) is retried, as a real client would.
function join() {
  socket.emit("session:join", { sessionId, since: lastSeq }, (ack) => {
    out({ type: "ack", ack });
    if (ack && !ack.ok && /try again/.test(ack.error ?? "")) setTimeout(join, 500);
  });
}
socket.on("connection:evicted", (notice) => out({ type: "evicted", ...notice, lastSeq }));
socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
socket.on("connect_error", (err) => out({ type: "connect_error", message: err.message }));
setTimeout(() => { out({ type: "timeout" }); exitFlushed(1); }, timeout);
