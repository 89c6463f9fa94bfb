// A name belongs to one person per room, told to a client we did not write: the official
// socket.io-client. Usage: node name_taken.mjs URL ROOM -> one JSON line with the acks.
import { io } from "socket.io-client";

const [url, room] = process.argv.slice(2);

const connect = () => new Promise((resolve, reject) => {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  socket.on("connect", () => resolve(socket));
  socket.on("connect_error", reject);
});
const join = (socket, payload) =>
  socket.timeout(10000).emitWithAck("joinRoom", { roomId: room, ...payload });

const owner = await connect();
const first = await join(owner, { username: "Alice", memberKey: "alices-own-key-0123456789" });
const other = await connect();
// Another person, the same name in another guise: a Cyrillic a, and no key of theirs.
const taken = await join(other, { username: "\u0430lice", memberKey: "someone-elses-key-0123456789" });
const keyless = await join(other, { username: "ALICE" });
// The server made a key for a join that brought none, and that key keeps the name.
const made = await join(other, { username: "bob" });
const third = await connect();
const back = await join(third, { username: "Bob", memberKey: made.memberKey });
console.log(JSON.stringify({ first, taken, keyless, made, back }));
for (const s of [owner, other, third]) s.disconnect();
