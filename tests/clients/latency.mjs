// Benchmark client (official socket.io-client): opens CLIENTS connections per session, joins
// each session, and measures worker-print → client-receive latency from `t=<ms>` actions.
//
//   node latency.mjs URL CLIENTS ID[,ID...] [--connect-only]
//
// Prints {"type":"joined"} once every connection has joined, then, after every connection saw
// session:complete of its session, one JSON summary: received counts and latency percentiles.
// A connection the server evicts for not keeping up reconnects and re-joins with the last seq
// it received, as every client should (counted in `evicted`); each event counts once.
// --connect-only: join and hold the connections until stdin closes (memory measurement).
import { io } from "socket.io-client";

// process.exit() drops whatever stdout has not yet handed to the pipe (writes to a pipe are
// asynchronous in Node): exit once what was written has been flushed.
function exitFlushed(code) {
  process.stdout.write("", () => process.exit(code));
}

const [url, perSession, idList, ...rest] = process.argv.slice(2);
const ids = idList.split(",");
const clients = Number(perSession);
const connectOnly = rest.includes("--connect-only");
const now = () => performance.timeOrigin + performance.now();
const latencies = [];
let thinking = 0, flood = 0, firstFlood = 0, lastFlood = 0, done = 0, joined = 0, evicted = 0;
// Every event received by any connection; when the first and last stamped line arrived.
let received = 0, firstStamp = 0, lastStamp = 0;
const total = ids.length * clients;
const sockets = [];

function watch(id) {
  const socket = io(url, {
    transports: ["websocket"], forceNew: true, reconnection: !connectOnly,
    reconnectionDelay: 100, reconnectionDelayMax: 500,
  });
  sockets.push(socket);
  let lastSeq = 0, hasJoined = false;
  socket.onAny((event, d) => {
    if (event === "connection:evicted") return void evicted++;
    if (typeof d?.seq !== "number" || d.seq <= lastSeq) return;
    lastSeq = d.seq;
    received++;
    const t = now();
    if (event === "agent:thinking") {
      thinking++;
      if (d.action.startsWith("t=")) {
        latencies.push(t - Number(d.action.slice(2)));
        if (firstStamp === 0) firstStamp = t;
        lastStamp = t;
      } else if (d.action === "flood") {
        if (flood === 0) firstFlood = t;
        lastFlood = t;
        flood++;
      }
    } else if (event === "session:complete" && ++done === total) {
      finish();
    }
  });
  socket.on("connect", () => {
    socket.emit("session:join", { sessionId: id, since: lastSeq }, (ack) => {
      if (!ack || !ack.ok) {
        console.error("join failed", ack);
        exitFlushed(1);
      }
      if (ack.truncated) {
        // The stream no longer holds what this viewer missed: a loss it was told about, but
        // the run cannot audit it (the bench keeps the whole flood in the stream).
        console.error("join truncated: events after", lastSeq, "were trimmed");
        exitFlushed(1);
      }
      if (!hasJoined) {
        hasJoined = true;
        if (++joined === total) console.log(JSON.stringify({ type: "joined" }));
      }
    });
  });
  socket.on("connect_error", (e) => {
    if (socket.active) return; // reconnecting
    console.error("connect_error", e.message);
    exitFlushed(1);
  });
}

for (const id of ids) {
  for (let c = 0; c < clients; c++) watch(id);
}

function pct(p) {
  if (latencies.length === 0) return null;
  const s = [...latencies].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

function finish() {
  console.log(JSON.stringify({
    type: "summary", connections: total, thinking, stamped: latencies.length,
    p50: pct(0.5), p95: pct(0.95), p99: pct(0.99), max: pct(1),
    flood, floodSeconds: (lastFlood - firstFlood) / 1000,
    stampSeconds: (lastStamp - firstStamp) / 1000, received, evicted,
  }));
  for (const s of sockets) s.close();
  exitFlushed(0);
}

if (connectOnly) {
  process.stdin.resume();
  process.stdin.on("end", () => { for (const s of sockets) s.close(); exitFlushed(0); });
}
