/**
 * The replay's engine: play, pause, speed and seek over the server's paced event stream.
 *
 * The server paces (SSE `GET /api/rooms/{id}/replay?speed&maxPause&after`); this keeps the
 * transcript (the live room's `RoomSync`), the scrubber's position and the voices in step
 * with it:
 *  - pause closes the stream; play opens a new one after the last version applied;
 *  - a new speed is a new stream from the same place;
 *  - a seek rebuilds the transcript at the version of that instant from the time line
 *    (the log, loaded once) and streams on from there;
 *  - a reply's voice starts with its `reply.audio` event, or part-way in after a seek.
 * No React here, and the stream and clock are passed in, so it is tested in Node.
 */
import type { RawEvent } from "../api/protocol";
import { fromRaw } from "../sync/events";
import { RoomSync } from "../sync/roomState";
import { Timeline } from "./timeline";

export type ReplayState = "loading" | "playing" | "paused" | "reconnecting" | "finished" | "error";

/** The part of EventSource this uses (a fake in tests). */
export interface StreamLike {
  onmessage: ((e: MessageEvent<string>) => void) | null;
  onerror: ((e: Event) => void) | null;
  addEventListener(type: "end", listener: (e: MessageEvent<string>) => void): void;
  close(): void;
  readonly readyState: number;
}

export interface VoiceLike {
  start(id: string, url: string, offset: number, rate: number, muted: boolean): void;
  pause(): void;
  stop(): void;
  setRate(rate: number): void;
}

export interface ReplayOptions {
  open: (url: string) => StreamLike;
  voice: VoiceLike;
  /** Whether the person muted Tom's voice (the live room's switch). */
  muted: () => boolean;
  /** The URL an <audio> element may fetch (a private room's token added). */
  mediaUrl?: (url: string) => string;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** The longest wait between two events, in seconds (the server's `maxPause`). */
  maxPause?: number;
}

export interface ReplaySnapshot {
  state: ReplayState;
  speed: number;
  /** Versions applied so far. */
  version: number;
  start: number;
  end: number;
  error: string | null;
}

const CLOSED = 2; // EventSource.CLOSED, which Node does not define

export class ReplayController {
  readonly sync: RoomSync;
  private timeline = new Timeline();
  private stream: StreamLike | null = null;
  private opening: unknown = null;
  private snapshot: ReplaySnapshot;
  private readonly listeners = new Set<() => void>();
  /** The session instant of the last thing shown, and when (wall clock) it was shown. */
  private anchor = { session: 0, wall: 0 };
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private readonly maxPause: number;

  constructor(
    private readonly roomId: string,
    private readonly token: string | null,
    speed: number,
    private readonly options: ReplayOptions,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
    this.maxPause = options.maxPause ?? 3;
    this.snapshot = { state: "loading", speed, version: 0, start: 0, end: 0, error: null };
    this.sync = new RoomSync(roomId, { requestResync: () => {} });
    this.sync.applyAck(this.timeline.ackAt(roomId, 0));
    // A reply's voice arrives: it starts now, in step with the text being replayed.
    this.sync.onAudio((id, url) => {
      if (this.snapshot.state !== "playing") return;
      this.options.voice.start(id, this.media(url), 0, this.snapshot.speed, this.options.muted());
    });
  }

  getState = (): ReplaySnapshot => this.snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** The room's log has loaded: the time line is known, the replay starts from the top. */
  ready(events: Iterable<RawEvent>, autoplay = true): void {
    this.timeline = new Timeline(events);
    this.rebuild(this.timeline.start);
    this.set({ start: this.timeline.start, end: this.timeline.end, state: "paused" });
    if (autoplay) this.play();
  }

  failed(message: string): void {
    this.close();
    this.set({ state: "error", error: message });
  }

  /** The instant of the session on screen (ms since the epoch), moving while playing. */
  position(): number {
    const { session, wall } = this.anchor;
    if (this.snapshot.state !== "playing") return session;
    const next = this.timeline.timeOf(this.snapshot.version + 1);
    const limit = this.snapshot.version >= this.timeline.head ? this.timeline.end : next;
    return Math.min(session + (this.now() - wall) * this.snapshot.speed, Math.max(limit, session));
  }

  play(): void {
    const { state } = this.snapshot;
    if (state === "loading" || state === "error" || state === "playing" || state === "reconnecting") return;
    if (state === "finished") this.rebuild(this.timeline.start);
    this.anchor = { session: this.anchor.session, wall: this.now() };
    this.set({ state: "playing" });
    this.openFrom(this.anchor.session);
    this.voiceAt(this.anchor.session);
  }

  pause(): void {
    if (this.snapshot.state !== "playing" && this.snapshot.state !== "reconnecting") return;
    this.anchor = { session: this.position(), wall: this.now() };
    this.close();
    this.options.voice.pause();
    this.set({ state: "paused" });
  }

  toggle(): void {
    if (this.snapshot.state === "playing" || this.snapshot.state === "reconnecting") this.pause();
    else this.play();
  }

  setSpeed(speed: number): void {
    if (!(speed > 0) || speed === this.snapshot.speed) return;
    const playing = this.snapshot.state === "playing" || this.snapshot.state === "reconnecting";
    const at = this.position();
    this.anchor = { session: at, wall: this.now() };
    this.set({ speed });
    this.options.voice.setRate(speed);
    if (playing) {
      this.close();
      this.openFrom(at);
      this.voiceAt(at);
    }
  }

  /** Jump to an instant of the session: the transcript as it was then, and on from there. */
  seek(ms: number): void {
    if (this.snapshot.state === "loading" || this.snapshot.state === "error") return;
    const playing = this.snapshot.state === "playing" || this.snapshot.state === "reconnecting";
    const at = Math.min(Math.max(ms, this.timeline.start), this.timeline.end);
    this.close();
    this.options.voice.stop();
    this.rebuild(at);
    if (playing) {
      this.set({ state: "playing" });
      this.openFrom(at);
      this.voiceAt(at);
    } else {
      this.set({ state: "paused" });
    }
  }

  /** The mute switch or the speed changed what may sound: start or stop the voice of now. */
  refreshVoice(): void {
    if (this.snapshot.state !== "playing") return;
    if (this.options.muted()) this.options.voice.pause();
    else this.voiceAt(this.position());
  }

  /**
   * The page is going away (or React's StrictMode is trying it): nothing goes on playing.
   * Subscribers stay, so a `ready()` afterwards starts it all again.
   */
  stop(): void {
    this.close();
    this.options.voice.stop();
    if (this.snapshot.state !== "error") this.set({ state: "loading" });
  }

  // --- internals --------------------------------------------------------------------

  private rebuild(at: number): void {
    const version = this.timeline.versionAt(at);
    this.sync.applyAck(this.timeline.ackAt(this.roomId, version));
    this.anchor = { session: at, wall: this.now() };
    this.set({ version });
  }

  /**
   * A stream after the current version. The server sends its first event at once, so
   * when we stand between two events the stream opens when the next one is due.
   */
  private openFrom(at: number): void {
    const after = this.snapshot.version;
    const wait =
      after < this.timeline.head
        ? Math.min((this.timeline.timeOf(after + 1) - at) / this.snapshot.speed, this.maxPause * 1000)
        : 0;
    this.opening = this.setTimer(
      () => {
        this.opening = null;
        this.connect(after);
      },
      Math.max(0, wait),
    );
  }

  private connect(after: number): void {
    const query = new URLSearchParams({
      speed: String(this.snapshot.speed),
      maxPause: String(this.maxPause),
      after: String(after),
    });
    // EventSource cannot send headers: a private room's token goes in the query.
    if (this.token) query.set("token", this.token);
    const stream = this.options.open(`/api/rooms/${encodeURIComponent(this.roomId)}/replay?${query}`);
    this.stream = stream;
    stream.onmessage = (e) => {
      if (this.stream !== stream) return;
      const raw = parseEvent(e.data);
      if (!raw) return;
      if (this.timeline.append(raw)) this.set({ end: this.timeline.end });
      this.sync.receive(fromRaw(raw));
      this.anchor = { session: this.timeline.timeOf(raw.version), wall: this.now() };
      this.set({ state: "playing", version: this.sync.getView().version });
    };
    // After `end` EventSource would reconnect and start over: close it.
    stream.addEventListener("end", () => {
      if (this.stream !== stream) return;
      this.close();
      this.anchor = { session: this.timeline.end, wall: this.now() };
      this.set({ state: "finished" });
    });
    stream.onerror = () => {
      if (this.stream !== stream) return;
      // A dropped connection is retried by EventSource itself, resuming after the last
      // event it got (Last-Event-ID); only a refusal closes it for good.
      if (stream.readyState === CLOSED) this.failed("the replay stream was refused");
      else this.set({ state: "reconnecting" });
    };
  }

  private voiceAt(at: number): void {
    const voice = this.timeline.voiceAt(this.snapshot.version, at);
    if (voice) {
      const { messageId, url, offset } = voice;
      this.options.voice.start(messageId, this.media(url), offset, this.snapshot.speed, this.options.muted());
    }
  }

  private media(url: string): string {
    return this.options.mediaUrl ? this.options.mediaUrl(url) : url;
  }

  private close(): void {
    if (this.opening !== null) this.clearTimer(this.opening);
    this.opening = null;
    this.stream?.close();
    this.stream = null;
  }

  private set(patch: Partial<ReplaySnapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const l of this.listeners) l();
  }
}

export function parseEvent(data: string): RawEvent | null {
  try {
    const value = JSON.parse(data) as Partial<RawEvent>;
    if (typeof value.version !== "number" || typeof value.type !== "string") return null;
    return {
      version: value.version,
      type: value.type,
      data: value.data ?? {},
      recordedAt: typeof value.recordedAt === "string" ? value.recordedAt : new Date().toISOString(),
    };
  } catch {
    return null;
  }
}
