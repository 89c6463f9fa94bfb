import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { CatchUpAck, RawEvent, SnapshotAck, WireMessage } from "../api/protocol";
import { fromLive, fromRaw, type RoomEvent } from "./events";
import { RoomSync } from "./roomState";

const ROOM = "r1";
const T = "2026-01-01T00:00:00Z";

function userMessage(id: string, version: number, content = `hello ${id}`): WireMessage {
  return {
    id,
    roomId: ROOM,
    content,
    username: "ann",
    timestamp: T,
    isAI: false,
    audioUrl: null,
    status: "complete",
    version,
    characterId: null,
    edited: false,
    deleted: false,
    alternativeOf: null,
    chosen: true,
  };
}

function snapshot(
  version: number,
  messages: WireMessage[] = [],
  extra: Partial<SnapshotAck> = {},
): SnapshotAck {
  return { ok: true, roomId: ROOM, version, messages, streaming: [], hasMore: false, ...extra };
}

function catchUp(version: number, events: RawEvent[]): CatchUpAck {
  return { ok: true, roomId: ROOM, version, events };
}

const posted = (version: number, id = `m${version}`): RoomEvent =>
  fromLive("message", userMessage(id, version))!;
const started = (version: number, id: string): RoomEvent =>
  fromLive("aiStart", { messageId: id, roomId: ROOM, username: "Tom", timestamp: T, version })!;
const chunk = (version: number, id: string, index: number, text: string): RoomEvent =>
  fromLive("aiTextChunk", { messageId: id, chunk: text, index, version })!;
const audio = (version: number, id: string, url: string): RoomEvent =>
  fromLive("aiAudio", { messageId: id, audioUrl: url, version })!;
const completed = (version: number, id: string, content: string, status = "complete"): RoomEvent =>
  fromLive("aiComplete", { ...userMessage(id, version, content), username: "Tom", isAI: true, status })!;

function setup(holdBackMs = 1000) {
  const requestResync = vi.fn<(since: number) => void>();
  const sync = new RoomSync(ROOM, { requestResync, holdBackMs });
  return { sync, requestResync };
}

const ids = (sync: RoomSync) => sync.getView().messages.map((m) => m.id);
const contentOf = (sync: RoomSync, id: string) => sync.getView().messages.find((m) => m.id === id)?.content;

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("joining", () => {
  it("applies a snapshot and then live events in order", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(3, [userMessage("a", 2), userMessage("b", 3)]));
    sync.receive(posted(4, "c"));
    expect(ids(sync)).toEqual(["a", "b", "c"]);
    expect(sync.getView().version).toBe(4);
    expect(sync.since).toBe(4);
  });

  it("has no `since` before the first join", () => {
    const { sync } = setup();
    expect(sync.since).toBeUndefined();
  });

  it("buffers live events that arrive before the join ack", () => {
    const { sync } = setup();
    sync.beginJoin();
    // The socket is in the Socket.IO room before the server reads the snapshot, so these
    // can arrive first; v3 is also in the snapshot, v4 and v5 are not.
    sync.receive(posted(5, "e"));
    sync.receive(posted(3, "b"));
    sync.receive(posted(4, "d"));
    expect(sync.getView().messages).toHaveLength(0);
    sync.applyAck(snapshot(3, [userMessage("a", 2), userMessage("b", 3)]));
    expect(ids(sync)).toEqual(["a", "b", "d", "e"]);
    expect(sync.getView().version).toBe(5);
    expect(sync.heldBack).toBe(0);
  });

  it("puts a streaming reply where it started and grows it with later chunks only", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.receive(chunk(6, "r", 1, " world")); // already inside the snapshot's text
    sync.applyAck(
      snapshot(7, [userMessage("a", 4), userMessage("b", 7)], {
        streaming: [
          {
            messageId: "r",
            roomId: ROOM,
            username: "Tom",
            content: "Hello world",
            timestamp: T,
            version: 5,
            audioUrl: null,
            alternativeOf: null,
          },
        ],
      }),
    );
    sync.receive(chunk(8, "r", 2, "!"));
    sync.receive(chunk(6, "r", 1, " world")); // late duplicate
    expect(ids(sync)).toEqual(["a", "r", "b"]);
    expect(contentOf(sync, "r")).toBe("Hello world!");
    expect(sync.getView().messages[1]!.status).toBe("streaming");
  });
});

describe("ordering", () => {
  it("holds back an event whose version is ahead until the hole is filled", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(1));
    sync.receive(started(2, "r"));
    sync.receive(chunk(4, "r", 1, " two"));
    sync.receive(chunk(5, "r", 2, " three"));
    expect(contentOf(sync, "r")).toBe("");
    expect(sync.getView().version).toBe(2);
    expect(sync.heldBack).toBe(2);

    vi.advanceTimersByTime(500);
    sync.receive(chunk(3, "r", 0, "one"));
    expect(contentOf(sync, "r")).toBe("one two three");
    expect(sync.getView().version).toBe(5);
    vi.advanceTimersByTime(5000);
    expect(requestResync).not.toHaveBeenCalled();
  });

  it("drops duplicates, whether already applied or already held back", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(1));
    sync.receive(started(2, "r"));
    sync.receive(chunk(3, "r", 0, "a"));
    sync.receive(chunk(3, "r", 0, "a"));
    sync.receive(chunk(5, "r", 2, "c"));
    sync.receive(chunk(5, "r", 2, "c"));
    sync.receive(chunk(4, "r", 1, "b"));
    sync.receive(started(2, "r"));
    expect(contentOf(sync, "r")).toBe("abc");
    expect(ids(sync)).toEqual(["r"]);
  });

  it("asks for a resync when a hole is not filled within a second", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(10));
    sync.receive(posted(12));
    vi.advanceTimersByTime(999);
    expect(requestResync).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(requestResync).toHaveBeenCalledExactlyOnceWith(10);

    // The resync answer fills the hole; the held-back v12 then applies once.
    sync.receive(posted(13));
    sync.applyAck(
      catchUp(12, [
        {
          version: 11,
          type: "message.posted",
          recordedAt: T,
          data: { message_id: "m11", username: "bo", content: "x" },
        },
        {
          version: 12,
          type: "message.posted",
          recordedAt: T,
          data: { message_id: "m12", username: "ann", content: "hello m12" },
        },
      ]),
    );
    expect(ids(sync)).toEqual(["m11", "m12", "m13"]);
    expect(sync.getView().version).toBe(13);
    vi.advanceTimersByTime(5000);
    expect(requestResync).toHaveBeenCalledTimes(1);
  });

  it("times each hole from when it opened, not from an older one", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(1));
    sync.receive(posted(3));
    vi.advanceTimersByTime(800);
    sync.receive(posted(2)); // fills the first hole
    sync.receive(posted(5)); // opens a new one at v4
    vi.advanceTimersByTime(800);
    expect(requestResync).not.toHaveBeenCalled();
    vi.advanceTimersByTime(200);
    expect(requestResync).toHaveBeenCalledWith(3);
  });

  it("asks again after a failed resync if the hole is still open", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(1));
    sync.receive(posted(3));
    vi.advanceTimersByTime(1000);
    expect(requestResync).toHaveBeenCalledTimes(1);
    sync.ackFailed();
    vi.advanceTimersByTime(1000);
    expect(requestResync).toHaveBeenCalledTimes(2);
  });

  it("does not time holes while a join is in flight", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.receive(posted(9));
    vi.advanceTimersByTime(3000);
    expect(requestResync).not.toHaveBeenCalled();
  });
});

describe("catching up after a drop", () => {
  const rawStart = (v: number): RawEvent => ({
    version: v,
    type: "reply.started",
    recordedAt: T,
    data: { message_id: "r", character: "Tom", in_reply_to: ["a"] },
  });
  const rawChunk = (v: number, index: number, text: string): RawEvent => ({
    version: v,
    type: "reply.chunk",
    recordedAt: T,
    data: { message_id: "r", index, text },
  });

  it("continues a reply in progress with no duplicate and no hole", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(2, [userMessage("a", 2)]));
    sync.receive(started(3, "r"));
    sync.receive(chunk(4, "r", 0, "Once"));
    // Connection drops; the server goes on writing v5..v7. We rejoin with since = 4.
    expect(sync.since).toBe(4);
    sync.beginJoin();
    sync.receive(chunk(7, "r", 3, " time")); // live, before the ack
    sync.applyAck(catchUp(6, [rawChunk(5, 1, " upon"), rawChunk(6, 2, " a")]));
    sync.receive(chunk(8, "r", 4, "."));
    expect(contentOf(sync, "r")).toBe("Once upon a time.");
    sync.receive(completed(9, "r", "Once upon a time."));
    const reply = sync.getView().messages.find((m) => m.id === "r")!;
    expect(reply.status).toBe("complete");
    expect(ids(sync)).toEqual(["a", "r"]);
  });

  it("replaces everything on a reset snapshot", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(2, [userMessage("a", 2)]));
    sync.beginJoin();
    sync.applyAck(snapshot(20_000, [userMessage("z", 19_999)], { reset: true, hasMore: true }));
    expect(ids(sync)).toEqual(["z"]);
    expect(sync.getView().version).toBe(20_000);
    expect(sync.getView().hasMore).toBe(true);
  });

  it("reads raw events of every type", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(
      catchUp(7, [
        { version: 1, type: "room.created", recordedAt: T, data: { name: "R", character: "Tom" } },
        {
          version: 2,
          type: "message.posted",
          recordedAt: T,
          data: {
            message_id: "v",
            username: "ann",
            content: "said aloud",
            source: "voice",
            audio_url: "/media/v.webm",
          },
        },
        rawStart(3),
        rawChunk(4, 0, "Hi"),
        {
          version: 5,
          type: "reply.audio",
          recordedAt: T,
          data: { message_id: "r", audio_url: "/media/r.mp3", format: "mp3", bytes: 10 },
        },
        rawChunk(6, 1, " there"),
        {
          version: 7,
          type: "reply.completed",
          recordedAt: T,
          data: { message_id: "r", content: "Hi there", status: "stopped", error: null },
        },
      ]),
    );
    const [voice, reply] = sync.getView().messages;
    expect(voice).toMatchObject({
      id: "v",
      source: "voice",
      audioUrl: "/media/v.webm",
      content: "said aloud",
    });
    expect(reply).toMatchObject({
      id: "r",
      isAI: true,
      username: "Tom",
      content: "Hi there",
      status: "stopped",
      audioUrl: "/media/r.mp3",
    });
  });
});

describe("voice", () => {
  it("keeps why a reply's voice is unavailable, live or from the log", () => {
    const { sync } = setup();
    const heard = vi.fn();
    sync.onAudio(heard);
    sync.beginJoin();
    sync.applyAck(snapshot(1));
    sync.receive(started(2, "r"));
    const refused = "Fish Audio says the account has no credit left: top up the API balance (HTTP 402)";
    sync.receive(fromLive("aiAudio", { messageId: "r", audioUrl: null, error: refused, version: 3 })!);
    expect(heard).not.toHaveBeenCalled();
    expect(sync.getView().messages[0]).toMatchObject({ audioUrl: null, voiceError: refused });

    expect(
      fromRaw({
        version: 9,
        type: "reply.audio",
        recordedAt: T,
        data: { message_id: "s", audio_url: "/media/s.mp3", error: "cut", format: "mp3", bytes: 9 },
      }),
    ).toEqual({ version: 9, kind: "audio", id: "s", audioUrl: "/media/s.mp3", error: "cut" });
    // An event from before the field existed has none.
    expect(
      fromRaw({ version: 9, type: "reply.audio", recordedAt: T, data: { message_id: "s", audio_url: null } }),
    ).toMatchObject({ error: null });
  });

  it("announces audio that arrives while the reply is being written", () => {
    const { sync } = setup();
    const heard = vi.fn();
    sync.onAudio(heard);
    sync.beginJoin();
    sync.applyAck(snapshot(1));
    sync.receive(started(2, "r"));
    sync.receive(audio(3, "r", "/media/r.mp3"));
    expect(heard).toHaveBeenCalledExactlyOnceWith("r", "/media/r.mp3");
    // The second reply.audio (final size of the same file) does not start it again.
    sync.receive(audio(4, "r", "/media/r.mp3"));
    expect(heard).toHaveBeenCalledTimes(1);
    expect(sync.getView().messages[0]!.audioUrl).toBe("/media/r.mp3");
  });

  it("does not announce audio of replies a catch-up shows finished", () => {
    const { sync } = setup();
    const heard = vi.fn();
    sync.onAudio(heard);
    sync.beginJoin();
    sync.applyAck(
      catchUp(4, [
        fromRawLike(1, "reply.started", { message_id: "r", character: "Tom" }),
        fromRawLike(2, "reply.audio", { message_id: "r", audio_url: "/media/r.mp3" }),
        fromRawLike(3, "reply.completed", { message_id: "r", content: "x", status: "complete" }),
        fromRawLike(4, "reply.started", { message_id: "s", character: "Tom" }),
      ]),
    );
    expect(heard).not.toHaveBeenCalled();
  });
});

describe("older pages", () => {
  it("prepends an older page without duplicates and follows nextBefore", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(60, [userMessage("m50", 50), userMessage("m60", 60)], { hasMore: true }));
    expect(sync.olderCursor()).toBe(50);
    const epoch = sync.getView().epoch;
    sync.prependOlder(epoch, [userMessage("m40", 40), userMessage("m50", 50)], 40);
    expect(ids(sync)).toEqual(["m40", "m50", "m60"]);
    expect(sync.olderCursor()).toBe(40);
    sync.prependOlder(epoch, [userMessage("m30", 30)], null);
    expect(sync.getView().hasMore).toBe(false);
    expect(sync.olderCursor()).toBeNull();
  });

  it("ignores a page fetched before the transcript was replaced", () => {
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(60, [userMessage("m60", 60)], { hasMore: true }));
    const epoch = sync.getView().epoch;
    sync.beginJoin();
    sync.applyAck(snapshot(70, [userMessage("m70", 70)], { reset: true, hasMore: true }));
    sync.prependOlder(epoch, [userMessage("m10", 10)], null);
    expect(ids(sync)).toEqual(["m70"]);
  });
});

function fromRawLike(version: number, type: string, data: Record<string, unknown>): RawEvent {
  // Sanity: every raw event built here must be readable by fromRaw.
  const raw = { version, type, data, recordedAt: T };
  expect(fromRaw(raw).version).toBe(version);
  return raw;
}

describe("older pages around a long reply", () => {
  it("pages from the oldest finished message, not from a reply still being written", () => {
    // Tom started replying at v6 and 20 messages came in while he talks; the snapshot's
    // page holds only the newest of them, plus the reply in `streaming`.
    const { sync } = setup();
    sync.beginJoin();
    sync.applyAck(
      snapshot(30, [userMessage("m20", 20), userMessage("m30", 30)], {
        hasMore: true,
        streaming: [
          {
            messageId: "r",
            roomId: ROOM,
            username: "Tom",
            content: "Still talking",
            timestamp: T,
            version: 6,
            audioUrl: null,
            alternativeOf: null,
          },
        ],
      }),
    );
    expect(ids(sync)).toEqual(["r", "m20", "m30"]);
    expect(sync.olderCursor()).toBe(20);

    // The page below 20 holds the reply (as the messages table has it) and what it missed.
    const streamingRow = {
      ...userMessage("r", 6, ""),
      isAI: true,
      username: "Tom",
      status: "streaming" as const,
    };
    sync.prependOlder(
      sync.getView().epoch,
      [userMessage("m5", 5), streamingRow, userMessage("m7", 7), userMessage("m19", 19)],
      null,
    );
    expect(ids(sync)).toEqual(["m5", "r", "m7", "m19", "m20", "m30"]);
    expect(contentOf(sync, "r")).toBe("Still talking");
    expect(sync.olderCursor()).toBeNull();
  });
});

describe("an answer that stops short", () => {
  it("asks for the rest when a catch-up does not reach the version it announced", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(2, [userMessage("a", 2)]));
    sync.beginJoin();
    sync.applyAck(
      catchUp(5, [
        {
          version: 3,
          type: "message.posted",
          recordedAt: T,
          data: { message_id: "b", username: "bo", content: "x" },
        },
      ]),
    );
    expect(sync.getView().version).toBe(3);
    vi.advanceTimersByTime(1000);
    expect(requestResync).toHaveBeenCalledExactlyOnceWith(3);
  });

  it("trusts a reset snapshot that moves the version back", () => {
    const { sync, requestResync } = setup();
    sync.beginJoin();
    sync.applyAck(snapshot(50, [userMessage("a", 50)]));
    sync.beginJoin();
    sync.applyAck(snapshot(4, [userMessage("z", 4)], { reset: true }));
    sync.receive(posted(5, "y"));
    expect(ids(sync)).toEqual(["z", "y"]);
    vi.advanceTimersByTime(5000);
    expect(requestResync).not.toHaveBeenCalled();
  });
});

describe("the tree", () => {
  const raw = (version: number, type: string, data: Record<string, unknown>): RawEvent => ({
    version,
    type,
    data,
    recordedAt: T,
  });

  it("shows the newest alternative, then the chosen one, edits and deletions", () => {
    const sync = new RoomSync(ROOM, { requestResync: () => {} });
    sync.beginJoin();
    sync.applyAck(snapshot(1, [userMessage("m", 1)]));
    const events = [
      raw(2, "reply.started", { message_id: "a1", character: "Tom", alternative_of: null }),
      raw(3, "reply.completed", { message_id: "a1", content: "one", status: "complete" }),
      raw(4, "reply.started", { message_id: "a2", character: "Tom", alternative_of: "a1" }),
      raw(5, "reply.chunk", { message_id: "a2", index: 0, text: "two" }),
      raw(6, "reply.completed", { message_id: "a2", content: "two", status: "complete" }),
    ];
    for (const e of events) sync.receive(fromRaw(e));
    const chosen = () => sync.getView().messages.map((m) => [m.id, m.chosen]);
    expect(chosen()).toEqual([
      ["m", true],
      ["a1", false],
      ["a2", true],
    ]);
    sync.receive(
      fromLive("alternativeChosen", { roomId: ROOM, messageId: "a1", alternativeOf: "a1", version: 7 })!,
    );
    expect(chosen()).toEqual([
      ["m", true],
      ["a1", true],
      ["a2", false],
    ]);
    sync.receive(fromLive("messageEdited", { roomId: ROOM, messageId: "m", content: "hi!", version: 8 })!);
    sync.receive(fromRaw(raw(9, "message.redacted", { message_id: "a2", by: "ann", reason: null })));
    const [m, , a2] = sync.getView().messages;
    expect([m!.content, m!.edited]).toEqual(["hi!", true]);
    expect([a2!.content, a2!.deleted]).toEqual(["", true]);
    expect(sync.getView().version).toBe(9);
  });
});
