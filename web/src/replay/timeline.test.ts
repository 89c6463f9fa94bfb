import { describe, expect, it } from "vitest";
import type { RawEvent } from "../api/protocol";
import { RoomSync } from "../sync/roomState";
import { fromRaw } from "../sync/events";
import { Timeline, duration, ndjsonLines } from "./timeline";

const T0 = Date.parse("2026-03-14T09:26:53.000Z");
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

// A session: greeting, a question, a reply with a voice that is stopped, a voice message.
const LOG: RawEvent[] = [
  { type: "room.created", data: { name: "Books", character: "Tom" } },
  { type: "message.posted", data: { message_id: "m1", username: "ann", content: "Hi" } },
  { type: "reply.started", data: { message_id: "r1", character: "Tom" } },
  { type: "reply.chunk", data: { message_id: "r1", index: 0, text: "Hello " } },
  { type: "reply.audio", data: { message_id: "r1", audio_url: "/media/r1.mp3", bytes: 0 } },
  { type: "reply.chunk", data: { message_id: "r1", index: 1, text: "there" } },
  { type: "reply.audio", data: { message_id: "r1", audio_url: "/media/r1.mp3", bytes: 900 } },
  { type: "reply.completed", data: { message_id: "r1", content: "Hello there", status: "stopped" } },
  {
    type: "message.posted",
    data: { message_id: "m2", username: "bob", content: "ok", source: "voice", audio_url: "/media/b.webm" },
  },
].map((e, i) => ({ ...e, version: i + 1, recordedAt: at([0, 2, 3, 3.5, 4, 5, 9, 9, 20][i]!) }));

describe("Timeline", () => {
  const line = new Timeline(LOG);

  it("spans the session and finds the version at any instant", () => {
    expect([line.start, line.end, line.head]).toEqual([T0, T0 + 20_000, 9]);
    expect(line.versionAt(T0 - 1)).toBe(0);
    expect(line.versionAt(T0)).toBe(1);
    expect(line.versionAt(T0 + 3_200)).toBe(3);
    expect(line.versionAt(T0 + 9_000)).toBe(8); // two events at the same instant: both
    expect(line.versionAt(T0 + 60_000)).toBe(9);
    expect(line.timeOf(0)).toBe(T0);
    expect(line.timeOf(6)).toBe(T0 + 5_000);
  });

  it("takes only the next version", () => {
    const grown = new Timeline(LOG.slice(0, 3));
    expect(grown.append(LOG[4]!)).toBe(false); // a gap
    expect(grown.append(LOG[2]!)).toBe(false); // a duplicate
    expect(grown.append(LOG[3]!)).toBe(true);
    expect(grown.head).toBe(4);
  });

  it("never runs backwards when a clock stepped back", () => {
    const odd = new Timeline([
      { version: 1, type: "x", data: {}, recordedAt: at(5) },
      { version: 2, type: "x", data: {}, recordedAt: at(4) },
    ]);
    expect(odd.timeOf(2)).toBe(T0 + 5_000);
  });

  it("gives the transcript at a version mid-reply, as a join snapshot", () => {
    const ack = line.ackAt("books", 5);
    expect(ack.version).toBe(5);
    expect(ack.messages.map((m) => [m.id, m.content, m.status, m.version])).toEqual([
      ["m1", "Hi", "complete", 2],
    ]);
    expect(ack.streaming).toEqual([
      {
        messageId: "r1",
        roomId: "books",
        username: "Tom",
        content: "Hello ",
        timestamp: at(3),
        version: 3,
        audioUrl: "/media/r1.mp3",
        alternativeOf: null,
      },
    ]);
  });

  it("gives the whole transcript at the end, equal to applying every event", () => {
    const fromSnapshot = new RoomSync("books", { requestResync: () => {} });
    fromSnapshot.applyAck(line.ackAt("books", 9));
    const live = new RoomSync("books", { requestResync: () => {} });
    live.applyAck({ ok: true, roomId: "books", version: 0, messages: [], streaming: [], hasMore: false });
    for (const e of LOG) live.receive(fromRaw(e));
    const strip = (sync: RoomSync) =>
      sync
        .getView()
        .messages.map((m) => [m.id, m.username, m.content, m.status, m.audioUrl, m.source, m.isAI]);
    expect(strip(fromSnapshot)).toEqual(strip(live));
    expect(strip(fromSnapshot)).toEqual([
      ["m1", "ann", "Hi", "complete", null, "text", false],
      ["r1", "Tom", "Hello there", "stopped", "/media/r1.mp3", "text", true],
      ["m2", "bob", "ok", "complete", "/media/b.webm", "voice", false],
    ]);
    // A snapshot mid-reply, then the rest of the events: the same transcript again.
    const resumed = new RoomSync("books", { requestResync: () => {} });
    resumed.applyAck(line.ackAt("books", 4));
    for (const e of LOG.slice(4)) resumed.receive(fromRaw(e));
    expect(strip(resumed)).toEqual(strip(live));
    expect(line.ackAt("books", 0)).toEqual({
      ok: true,
      roomId: "books",
      version: 0,
      messages: [],
      streaming: [],
      hasMore: false,
    });
  });

  it("knows which voice is sounding, and how far into it", () => {
    expect(line.voiceAt(4, T0 + 3_900)).toBeNull();
    expect(line.voiceAt(5, T0 + 4_000)).toEqual({ messageId: "r1", url: "/media/r1.mp3", offset: 0 });
    // The second reply.audio (the final size) does not restart it.
    expect(line.voiceAt(9, T0 + 12_500)).toEqual({ messageId: "r1", url: "/media/r1.mp3", offset: 8.5 });
    // Where the log gives the voice's length, a voice that is over is not offered.
    const timed = new Timeline(
      LOG.map((e) => (e.version === 7 ? { ...e, data: { ...e.data, duration_ms: 6000 } } : e)),
    );
    expect(timed.voiceAt(9, T0 + 9_900)?.offset).toBeCloseTo(5.9);
    expect(timed.voiceAt(9, T0 + 10_000)).toBeNull();
  });
});

describe("helpers", () => {
  it("formats durations", () => {
    expect([duration(0), duration(61_900), duration(3_600_000 + 5_000)]).toEqual(["0:00", "1:01", "1:00:05"]);
  });

  it("reads ndjson split anywhere", async () => {
    const text = '{"a":1}\n{"a":2}\n\n{"a":3}';
    const bytes = new TextEncoder().encode(text);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 5) controller.enqueue(bytes.slice(i, i + 5));
        controller.close();
      },
    });
    const got: unknown[] = [];
    for await (const line of ndjsonLines(body)) got.push(line);
    expect(got).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
  });
});
