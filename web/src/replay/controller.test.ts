import { beforeEach, describe, expect, it } from "vitest";
import type { RawEvent } from "../api/protocol";
import { ReplayController, type StreamLike, type VoiceLike } from "./controller";

const T0 = Date.parse("2026-03-14T09:00:00.000Z");
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

const LOG: RawEvent[] = [
  { type: "room.created", data: { name: "Books", character: "Tom" } },
  { type: "message.posted", data: { message_id: "m1", username: "ann", content: "Hi" } },
  { type: "reply.started", data: { message_id: "r1", character: "Tom" } },
  { type: "reply.audio", data: { message_id: "r1", audio_url: "/media/r1.mp3" } },
  { type: "reply.chunk", data: { message_id: "r1", index: 0, text: "Hello" } },
  { type: "reply.completed", data: { message_id: "r1", content: "Hello", status: "complete" } },
  { type: "message.posted", data: { message_id: "m2", username: "bob", content: "Bye" } },
].map((e, i) => ({ ...e, version: i + 1, recordedAt: at([0, 10, 11, 12, 14, 15, 60][i]!) }));

class FakeStream implements StreamLike {
  onmessage: ((e: MessageEvent<string>) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  readyState = 1;
  closed = false;
  private end: ((e: MessageEvent<string>) => void) | null = null;
  constructor(readonly url: string) {}
  addEventListener(_type: "end", listener: (e: MessageEvent<string>) => void): void {
    this.end = listener;
  }
  close(): void {
    this.closed = true;
  }
  send(version: number): void {
    this.onmessage?.({ data: JSON.stringify(LOG[version - 1]) } as MessageEvent<string>);
  }
  finish(): void {
    this.end?.({ data: "{}" } as MessageEvent<string>);
  }
  get query(): Record<string, string> {
    return Object.fromEntries(new URL(this.url, "http://x").searchParams);
  }
}

describe("ReplayController", () => {
  let streams: FakeStream[];
  let clock: number;
  let timers: Array<{ fn: () => void; ms: number }>;
  let voiceCalls: unknown[][];
  let replay: ReplayController;

  const voice: VoiceLike = {
    start: (...args) => voiceCalls.push(["start", ...args]),
    pause: () => voiceCalls.push(["pause"]),
    stop: () => voiceCalls.push(["stop"]),
    setRate: (rate) => voiceCalls.push(["rate", rate]),
  };
  const runTimers = () => {
    const due = timers;
    timers = [];
    for (const t of due) t.fn();
  };
  const current = () => streams[streams.length - 1]!;
  const texts = () => replay.sync.getView().messages.map((m) => `${m.username}: ${m.content} (${m.status})`);

  beforeEach(() => {
    streams = [];
    clock = 0;
    timers = [];
    voiceCalls = [];
    replay = new ReplayController("books", "sekrit", 2, {
      open: (url) => {
        const s = new FakeStream(url);
        streams.push(s);
        return s;
      },
      voice,
      muted: () => false,
      mediaUrl: (url) => `${url}?token=sekrit`,
      now: () => clock,
      setTimer: (fn, ms) => {
        const t = { fn, ms };
        timers.push(t);
        return t;
      },
      clearTimer: (t) => {
        timers = timers.filter((x) => x !== t);
      },
    });
    replay.ready(LOG);
    runTimers();
  });

  it("plays the server's stream from the top, with the token, speed and maxPause", () => {
    expect(replay.getState()).toMatchObject({ state: "playing", version: 1, start: T0, end: T0 + 60_000 });
    expect(current().query).toEqual({ speed: "2", maxPause: "3", after: "1", token: "sekrit" });
    current().send(2);
    current().send(3);
    expect(texts()).toEqual(["ann: Hi (complete)", "Tom:  (streaming)"]);
    // The reply's voice starts with its reply.audio event, at the replay's speed.
    current().send(4);
    expect(voiceCalls).toContainEqual(["start", "r1", "/media/r1.mp3?token=sekrit", 0, 2, false]);
    // Between events the position moves at the replay's speed, up to the next event.
    clock += 500;
    expect(replay.position()).toBe(T0 + 13_000);
    clock += 5_000;
    expect(replay.position()).toBe(T0 + 14_000);
  });

  it("pauses, and plays on after the last version", () => {
    current().send(2);
    clock += 1_000;
    replay.pause();
    expect(current().closed).toBe(true);
    expect(replay.getState().state).toBe("paused");
    const held = replay.position();
    clock += 10_000;
    expect(replay.position()).toBe(held);
    replay.play();
    // Between events 2 and 3: the stream opens when event 3 is due, (11 - 12) s... at once.
    expect(timers.map((t) => t.ms)).toEqual([0]);
    runTimers();
    expect(current().query.after).toBe("2");
    expect(streams.length).toBe(2);
  });

  it("changes speed on a new stream from the same place", () => {
    current().send(2);
    replay.setSpeed(4);
    runTimers();
    expect(streams[0]!.closed).toBe(true);
    expect(current().query).toMatchObject({ speed: "4", after: "2" });
    expect(voiceCalls).toContainEqual(["rate", 4]);
  });

  it("seeks: the transcript of that instant, the voice part-way in, the stream when due", () => {
    replay.seek(T0 + 14_500); // after the chunk (14 s), before the completion (15 s)
    expect(replay.getState().version).toBe(5);
    expect(texts()).toEqual(["ann: Hi (complete)", "Tom: Hello (streaming)"]);
    expect(voiceCalls).toContainEqual(["stop"]);
    expect(voiceCalls).toContainEqual(["start", "r1", "/media/r1.mp3?token=sekrit", 2.5, 2, false]);
    // The next event is half a second of session away: a quarter of a second at 2×.
    expect(timers.map((t) => t.ms)).toEqual([250]);
    runTimers();
    expect(current().query.after).toBe("5");
    // Back to the start while paused: the transcript of then, no stream.
    replay.pause();
    replay.seek(T0 - 5_000);
    expect(replay.getState()).toMatchObject({ state: "paused", version: 1 });
    expect(texts()).toEqual([]);
    expect(timers).toEqual([]);
  });

  it("finishes on end, and plays again from the top", () => {
    for (let v = 2; v <= 7; v++) current().send(v);
    current().finish();
    expect(replay.getState().state).toBe("finished");
    expect(current().closed).toBe(true);
    expect(replay.position()).toBe(T0 + 60_000);
    replay.play();
    runTimers();
    expect(replay.getState()).toMatchObject({ state: "playing", version: 1 });
    expect(current().query.after).toBe("1");
    expect(texts()).toEqual([]);
  });

  it("reports a refused stream as an error and a dropped one as reconnecting", () => {
    current().onerror?.(new Event("error"));
    expect(replay.getState().state).toBe("reconnecting");
    current().send(2);
    expect(replay.getState().state).toBe("playing");
    current().readyState = 2;
    current().onerror?.(new Event("error"));
    expect(replay.getState()).toMatchObject({ state: "error", error: "the replay stream was refused" });
  });
});
