// The tree with the official socket.io-client: regenerate, choose, edit, delete, refusals.
// Usage: node tree.mjs URL ROOM  -> prints one JSON line with what each client saw.
import { io } from "socket.io-client";

const [url, room] = process.argv.slice(2);
const LIVE = ["message", "aiStart", "aiTextChunk", "aiAudio", "aiComplete",
  "messageEdited", "messageDeleted", "alternativeChosen"];

function follower(name) {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  const connected = new Promise((resolve, reject) => { socket.on("connect", resolve); socket.on("connect_error", reject); });
  const state = { version: -1, lines: {}, held: new Map(), joined: false };
  const show = (slot, id) => {
    for (const line of Object.values(state.lines)) {
      if ((line.alternativeOf ?? line.id) === slot) line.chosen = line.id === id;
    }
  };
  const apply = (kind, p) => {
    const L = state.lines;
    if (kind === "message") L[p.id] = { id: p.id, content: p.content, alternativeOf: null, chosen: true, edited: false, deleted: false, status: "complete" };
    if (kind === "aiStart") {
      if (p.alternativeOf) show(p.alternativeOf, null);
      L[p.messageId] = { id: p.messageId, content: "", alternativeOf: p.alternativeOf, chosen: true, edited: false, deleted: false, status: "streaming" };
    }
    if (kind === "aiTextChunk") L[p.messageId].content += p.chunk;
    if (kind === "aiComplete") { L[p.id].content = p.content; L[p.id].status = p.status; }
    if (kind === "messageEdited") { L[p.messageId].content = p.content; L[p.messageId].edited = true; }
    if (kind === "messageDeleted") { L[p.messageId].content = ""; L[p.messageId].deleted = true; }
    if (kind === "alternativeChosen") show(p.alternativeOf, p.messageId);
    state.version = p.version;
  };
  const drain = () => {
    for (const v of [...state.held.keys()]) if (v <= state.version) state.held.delete(v);
    while (state.held.has(state.version + 1)) {
      const [kind, p] = state.held.get(state.version + 1);
      state.held.delete(state.version + 1);
      apply(kind, p);
    }
  };
  for (const kind of LIVE) {
    socket.on(kind, (p) => { state.held.set(p.version, [kind, p]); if (state.joined) drain(); });
  }
  const call = (event, payload) => socket.timeout(10000).emitWithAck(event, { roomId: room, ...payload });
  const join = async () => {
    await connected;
    const ack = await call("joinRoom", { username: name });
    if (!ack.ok) throw new Error(JSON.stringify(ack));
    for (const m of ack.messages) {
      state.lines[m.id] = { id: m.id, content: m.content, alternativeOf: m.alternativeOf, chosen: m.chosen, edited: m.edited, deleted: m.deleted, status: m.status };
    }
    state.version = ack.version;
    state.joined = true;
    drain();
    return ack;
  };
  const view = () => Object.values(state.lines).map((l) => [l.id, l.content, l.alternativeOf, l.chosen, l.edited, l.deleted]);
  return { socket, state, join, call, view };
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
const settled = (f) => () => Object.values(f.state.lines).every((l) => l.status !== "streaming");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Made over REST, so nobody joining hosts it: a member may delete only their own messages.
const made = await fetch(`${url}/api/rooms`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ name: room, id: room }),
});
if (made.status !== 201) throw new Error(`POST /api/rooms: ${made.status}`);
const a = follower("ann");
const b = follower("bob");
const joined = await a.join();
await b.join();
const greeting = joined.messages[0].id;
const sent = await a.call("sendMessage", { content: "Tell me about ships" });
await until(() => a.state.lines[sent.messageId] && Object.values(a.state.lines).filter((l) => l.status === "complete").length >= 3);
await until(settled(a));
const reply = Object.values(a.state.lines).filter((l) => l.alternativeOf === null && l.id !== greeting && l.id !== sent.messageId)[0].id;

// Every refusal, with its code; nothing reaches the room.
const before = a.state.version;
const refusals = {
  missing: await a.call("regenerate", { messageId: "nope" }),
  notLatest: await a.call("regenerate", { messageId: greeting }),
  noAlternatives: await a.call("chooseAlternative", { messageId: reply }),
  editOthers: await b.call("editMessage", { messageId: sent.messageId, content: "mine now" }),
  deleteOthers: await b.call("deleteMessage", { messageId: sent.messageId }),
  deleteReply: await a.call("deleteMessage", { messageId: reply }),
};
await sleep(300);
const afterRefusals = a.state.version;

const regenerated = await b.call("regenerate", { messageId: reply });
const busy = await a.call("regenerate", { messageId: reply });
await until(() => a.state.lines[regenerated.messageId]?.status === "complete" && b.state.lines[regenerated.messageId]?.status === "complete");
const chosen = await a.call("chooseAlternative", { messageId: reply });
const edited = await a.call("editMessage", { messageId: sent.messageId, content: "Tell me about boats" });
const deleted = await a.call("deleteMessage", { messageId: sent.messageId, reason: "typo" });
await until(() => b.state.version === deleted.version && a.state.version === deleted.version);
const c = follower("carol");
await c.join();

console.log(JSON.stringify({
  reply, regenerated, busy, chosen, edited, deleted, before, afterRefusals,
  refusals: Object.fromEntries(Object.entries(refusals).map(([k, v]) => [k, v.ok ? "ok" : v.error.code])),
  a: a.view(), b: b.view(), c: c.view(),
}));
for (const f of [a, b, c]) f.socket.close();
process.exit(0);
