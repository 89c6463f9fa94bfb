// The mid-reply join, with the official socket.io-client: a client we did not write.
// Usage: node late_joiner.mjs URL ROOM  -> prints one JSON line with what each client saw.
import { io } from "socket.io-client";

const [url, room] = process.argv.slice(2);

// The catch-up rules of DESIGN §2: wait for the join ack, drop what is old, hold back holes.
function follower(name) {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  const state = { version: -1, texts: {}, statuses: {}, applied: [], held: new Map(), joined: false };
  const apply = (kind, p) => {
    if (kind === "aiStart") { state.texts[p.messageId] = ""; state.statuses[p.messageId] = "streaming"; }
    if (kind === "aiTextChunk") state.texts[p.messageId] += p.chunk;
    if (kind === "aiComplete") { state.texts[p.id] = p.content; state.statuses[p.id] = p.status; }
    state.version = p.version;
    state.applied.push(p.version);
  };
  const drain = () => {
    for (const v of [...state.held.keys()]) if (v <= state.version) state.held.delete(v);
    while (state.held.has(state.version + 1)) {
      const [kind, p] = state.held.get(state.version + 1);
      state.held.delete(state.version + 1);
      apply(kind, p);
    }
  };
  for (const kind of ["message", "aiStart", "aiTextChunk", "aiAudio", "aiComplete"]) {
    socket.on(kind, (p) => {
      state.held.set(p.version, [kind, p]);
      if (state.joined) drain();
    });
  }
  const join = async () => {
    await new Promise((resolve, reject) => { socket.on("connect", resolve); socket.on("connect_error", reject); });
    const ack = await socket.timeout(10000).emitWithAck("joinRoom", { roomId: room, username: name });
    if (!ack.ok) throw new Error(JSON.stringify(ack));
    for (const s of ack.streaming) { state.texts[s.messageId] = s.content; state.statuses[s.messageId] = "streaming"; }
    for (const m of ack.messages) { state.texts[m.id] = m.content; state.statuses[m.id] = m.status; }
    state.version = ack.version;
    state.applied.push(ack.version);
    state.joined = true;
    drain();
    return ack;
  };
  return { socket, state, join };
}

const until = (predicate, ms = 20000) => new Promise((resolve, reject) => {
  const started = Date.now();
  const tick = () => {
    if (predicate()) return resolve();
    if (Date.now() - started > ms) return reject(new Error("timed out"));
    setTimeout(tick, 10);
  };
  tick();
});

const a = follower("ann");
await a.join();
const sent = await a.socket.timeout(10000).emitWithAck("sendMessage", { roomId: room, content: "Tell me everything about lighthouses" });
if (!sent.ok) throw new Error(JSON.stringify(sent));
let replyId;
await until(() => {
  replyId = Object.keys(a.state.statuses).find((id) => a.state.statuses[id] === "streaming");
  return replyId && a.state.texts[replyId].length > 15;
});
const b = follower("bob");
const bAck = await b.join();
await until(() => a.state.statuses[replyId] === "complete" && b.state.statuses[replyId] === "complete");
console.log(JSON.stringify({
  replyId,
  joinedMidReply: bAck.streaming.map((s) => ({ messageId: s.messageId, content: s.content })),
  joinVersion: bAck.version,
  a: { text: a.state.texts[replyId], applied: a.state.applied },
  b: { text: b.state.texts[replyId], applied: b.state.applied, version: b.state.version },
}));
a.socket.close();
b.socket.close();
process.exit(0);
