/**
 * A room's transcript kept in version order, whatever order the network delivers it in.
 *
 * The server numbers every event of a room 1, 2, 3…; this module applies
 * exactly the events `version + 1, version + 2, …` and nothing else:
 *  - versions ≤ the last applied one are duplicates (a join snapshot already holds them,
 *    or the same event came twice) and are dropped;
 *  - a version further ahead is held back until the hole before it is filled; if the
 *    hole is still there after `holdBackMs` the owner is asked to `resync`;
 *  - while a join or resync is in flight, live events are only buffered: the ack decides
 *    where the transcript stands, then the buffer is drained by the same rules.
 *
 * It knows nothing of React or Socket.IO, so it is tested on its own (roomState.test.ts).
 */
import { isCatchUp, type JoinAck, type WireMessage, type WireStreaming } from "../api/protocol";
import { type ChatMessage, type RoomEvent, fromRaw, fromWireMessage } from "./events";

export interface RoomView {
  roomId: string;
  /** The last version applied; 0 before the first join. */
  version: number;
  /** True once a join answer has been applied. */
  joined: boolean;
  /** Oldest first, in the order the log wrote them. */
  messages: readonly ChatMessage[];
  /** Whether older messages exist than the first one held. */
  hasMore: boolean;
  /** Bumped whenever the transcript is replaced, so a page fetched before it is ignored. */
  epoch: number;
}

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const defaultTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface RoomSyncOptions {
  /** Called when a hole has not been filled in time; answer with `applyAck` or `ackFailed`. */
  requestResync: (since: number) => void;
  /** How long a hole may stay open before asking for a resync (a second). */
  holdBackMs?: number;
  timers?: Timers;
}

export type AudioListener = (messageId: string, audioUrl: string) => void;

type Phase = "awaiting" | "live";

export class RoomSync {
  private view: RoomView;
  private phase: Phase = "awaiting";
  /** Events ahead of `view.version`, by version. */
  private readonly pending = new Map<number, RoomEvent>();
  private holeTimer: unknown = null;
  /** The newest version known to exist: from an ack or any event seen, applied or not. */
  private head = 0;
  /** The `before` cursor of the next older page (REST `messages?before=`). */
  private cursor: number | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly audioListeners = new Set<AudioListener>();
  private readonly holdBackMs: number;
  private readonly timers: Timers;
  private readonly requestResync: (since: number) => void;

  constructor(roomId: string, options: RoomSyncOptions) {
    this.view = { roomId, version: 0, joined: false, messages: [], hasMore: false, epoch: 0 };
    this.holdBackMs = options.holdBackMs ?? 1000;
    this.timers = options.timers ?? defaultTimers;
    this.requestResync = options.requestResync;
  }

  // --- reading ----------------------------------------------------------------------

  /** The current transcript; a new object after every change (for useSyncExternalStore). */
  getView = (): RoomView => this.view;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /**
   * Tells when a reply's voice arrives while the reply is still being written (the moment
   * to auto-play it). Audio of replies that a catch-up shows already finished is not
   * announced: nobody wants a backlog of old voices after a reconnect.
   */
  onAudio(listener: AudioListener): () => void {
    this.audioListeners.add(listener);
    return () => this.audioListeners.delete(listener);
  }

  /** The version to rejoin from, or undefined before the first join (no `since` then). */
  get since(): number | undefined {
    return this.view.joined ? this.view.version : undefined;
  }

  /** How many live events are held back waiting for a hole to fill (for tests and debug). */
  get heldBack(): number {
    return this.pending.size;
  }

  // --- joining ----------------------------------------------------------------------

  /** A join or resync is about to be sent: buffer live events until its answer. */
  beginJoin(): void {
    this.phase = "awaiting";
    this.stopHoleTimer();
  }

  /**
   * Apply a `joinRoom` or `resync` answer: a snapshot (replaces the transcript) or the
   * events since our version (applied in order like live ones). Then drain the buffer.
   */
  applyAck(ack: JoinAck): void {
    const announce: Array<[string, string]> = [];
    // A snapshot may also move back (the server started the room's log over): trust it.
    this.head = isCatchUp(ack) ? Math.max(this.head, ack.version) : ack.version;
    for (const v of this.pending.keys()) this.head = Math.max(this.head, v);
    if (isCatchUp(ack)) {
      for (const raw of ack.events) {
        if (raw.version > this.view.version && !this.pending.has(raw.version)) {
          this.pending.set(raw.version, fromRaw(raw));
        }
      }
      this.view = { ...this.view, joined: true };
      this.drain(announce);
      // Announce only what is still being spoken about (see onAudio).
      const still = announce.filter(([id]) => this.find(id)?.status === "streaming");
      announce.length = 0;
      announce.push(...still);
    } else {
      this.replace(ack.version, ack.messages, ack.streaming, Boolean(ack.hasMore));
      this.drain(announce);
    }
    this.phase = "live";
    this.emit();
    this.announce(announce);
    this.checkHole();
  }

  /** The join or resync failed or timed out; the owner will retry, keep holding events. */
  ackFailed(): void {
    if (this.view.joined) {
      // Back to live so that a remaining hole asks again after the hold-back time.
      this.phase = "live";
      this.checkHole();
    }
  }

  // --- live events ------------------------------------------------------------------

  /** A live event from the server, in whatever order it came. */
  receive(event: RoomEvent): void {
    if (event.version <= this.view.version || this.pending.has(event.version)) return;
    this.pending.set(event.version, event);
    this.head = Math.max(this.head, event.version);
    if (this.phase !== "live") return;
    const announce: Array<[string, string]> = [];
    if (this.drain(announce)) this.emit();
    this.announce(announce);
    this.checkHole();
  }

  // --- older pages ------------------------------------------------------------------

  /** The `before` cursor for the next older page, or null when there is none. */
  olderCursor(): number | null {
    return this.view.hasMore ? this.cursor : null;
  }

  /**
   * Merge an older page (REST `messages`, oldest first) in; ignored if the transcript was
   * replaced since it was asked for.
   *
   * The page holds every message that started below the cursor, in log order, and the
   * messages we hold that it lacks all started later: so the page's order, followed by
   * the rest of ours, is the log's order. Where both have a message ours is kept (it may
   * be newer, like the text of a reply still being written).
   */
  prependOlder(epoch: number, page: WireMessage[], nextBefore: number | null): void {
    if (epoch !== this.view.epoch) return;
    const ours = new Map(this.view.messages.map((m) => [m.id, m]));
    const inPage = new Set(page.map((m) => m.id));
    const merged = [
      ...page.map((m) => ours.get(m.id) ?? fromWireMessage(m)),
      ...this.view.messages.filter((m) => !inPage.has(m.id)),
    ];
    this.cursor = nextBefore;
    this.view = { ...this.view, messages: merged, hasMore: nextBefore !== null };
    this.emit();
  }

  /** Stop timers; the object is not used after this. */
  dispose(): void {
    this.stopHoleTimer();
    this.listeners.clear();
    this.audioListeners.clear();
  }

  // --- internals --------------------------------------------------------------------

  private replace(
    version: number,
    messages: WireMessage[],
    streaming: WireStreaming[] | undefined,
    hasMore: boolean,
  ): void {
    const list = messages.map(fromWireMessage);
    // Older pages start below the oldest finished message; not below a reply still being
    // written, which can be older than all of them and would skip what lies between.
    // (A wire message's `version` is its last one: starting a little high only overlaps.)
    const finished = list.map((m) => m.firstVersion);
    this.cursor = !hasMore ? null : finished.length > 0 ? Math.min(...finished) : version + 1;
    for (const s of streaming ?? []) {
      const reply: ChatMessage = {
        id: s.messageId,
        username: s.username,
        content: s.content,
        timestamp: s.timestamp,
        isAI: true,
        audioUrl: s.audioUrl ?? null,
        status: "streaming",
        firstVersion: s.version,
        source: "text",
        error: null,
        alternativeOf: s.alternativeOf ?? null,
        chosen: true,
      };
      const existing = list.findIndex((m) => m.id === reply.id);
      if (existing >= 0) {
        list[existing] = reply;
        continue;
      }
      // A reply goes where it started: before messages posted while it was being written.
      const at = list.findIndex((m) => m.firstVersion > reply.firstVersion);
      if (at < 0) list.push(reply);
      else list.splice(at, 0, reply);
    }
    this.view = {
      roomId: this.view.roomId,
      version,
      joined: true,
      messages: list,
      hasMore,
      epoch: this.view.epoch + 1,
    };
  }

  /** Apply pending events from version + 1 on while they are contiguous. */
  private drain(announce: Array<[string, string]>): boolean {
    // Anything at or below the version is stale now (a snapshot may have jumped ahead).
    for (const v of this.pending.keys()) if (v <= this.view.version) this.pending.delete(v);
    let changed = false;
    let next = this.pending.get(this.view.version + 1);
    while (next) {
      this.pending.delete(next.version);
      // A reply's voice is announced when its URL first appears: the server sends a second
      // `reply.audio` with the final size of the same file, which must not restart it.
      const voice: [string, string] | null =
        next.kind === "audio" && next.audioUrl && this.find(next.id)?.audioUrl !== next.audioUrl
          ? [next.id, next.audioUrl]
          : null;
      this.view = applyEvent(this.view, next);
      if (voice) announce.push(voice);
      changed = true;
      next = this.pending.get(this.view.version + 1);
    }
    if (changed) this.stopHoleTimer(); // progress: the hole that remains (if any) is new
    return changed;
  }

  /** Behind a version known to exist (held-back events, or an ack's head we did not reach). */
  private get behind(): boolean {
    return this.head > this.view.version;
  }

  private checkHole(): void {
    if (this.phase !== "live" || !this.behind || this.holeTimer !== null) return;
    this.holeTimer = this.timers.set(() => {
      this.holeTimer = null;
      if (this.phase !== "live" || !this.behind) return;
      this.phase = "awaiting";
      this.requestResync(this.view.version);
    }, this.holdBackMs);
  }

  private stopHoleTimer(): void {
    if (this.holeTimer !== null) this.timers.clear(this.holeTimer);
    this.holeTimer = null;
  }

  private find(id: string): ChatMessage | undefined {
    return this.view.messages.find((m) => m.id === id);
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }

  private announce(items: Array<[string, string]>): void {
    for (const [id, url] of items) for (const l of this.audioListeners) l(id, url);
  }
}

/** The transcript after one event (the event is the next version; that is checked by the caller). */
export function applyEvent(view: RoomView, event: RoomEvent): RoomView {
  const at = { ...view, version: event.version };
  const index =
    event.kind === "posted"
      ? view.messages.findIndex((m) => m.id === event.message.id)
      : event.kind === "other"
        ? -1
        : view.messages.findIndex((m) => m.id === event.id);
  const update = (patch: (m: ChatMessage) => ChatMessage): RoomView => {
    if (index < 0) return at;
    const messages = view.messages.slice();
    messages[index] = patch(messages[index]!);
    return { ...at, messages };
  };
  const add = (m: ChatMessage): RoomView => ({ ...at, messages: [...view.messages, m] });

  switch (event.kind) {
    case "posted":
      return index < 0 ? add(event.message) : update(() => event.message);
    case "started": {
      if (index >= 0) return at;
      const reply: ChatMessage = {
        id: event.id,
        username: event.username,
        content: "",
        timestamp: event.timestamp,
        isAI: true,
        audioUrl: null,
        status: "streaming",
        firstVersion: event.version,
        source: "text",
        error: null,
        alternativeOf: event.alternativeOf ?? null,
        chosen: true,
      };
      // The newest alternative is the one its slot shows.
      const slot = event.alternativeOf;
      const others = slot
        ? view.messages.map((m) => (slotOf(m) === slot ? { ...m, chosen: false } : m))
        : view.messages;
      return { ...at, messages: [...others, reply] };
    }
    case "edited":
      return update((m) => ({ ...m, content: event.content, edited: true }));
    case "deleted":
      // The words are gone for good: drop them here too.
      return update((m) => ({ ...m, content: "", audioUrl: null, deleted: true }));
    case "chosen": {
      if (index < 0) return at;
      const slot = slotOf(view.messages[index]!);
      const messages = view.messages.map((m) =>
        slotOf(m) === slot ? { ...m, chosen: m.id === event.id } : m,
      );
      return { ...at, messages };
    }
    case "chunk":
      return update((m) => (m.status === "streaming" ? { ...m, content: m.content + event.text } : m));
    case "audio":
      return update((m) => ({
        ...m,
        audioUrl: event.audioUrl ?? m.audioUrl,
        voiceError: event.error ?? m.voiceError ?? null,
      }));
    case "completed":
      return update((m) => ({
        ...m,
        content: event.content,
        status: event.status,
        error: event.error,
        audioUrl: event.audioUrl ?? m.audioUrl,
      }));
    case "other":
      return at;
  }
}

/** The first reply of a message's slot (its own id outside slots). */
export function slotOf(m: ChatMessage): string {
  return m.alternativeOf ?? m.id;
}

/** A slot's alternatives in order (the first reply first), from the messages held. */
export function alternativesOf(messages: readonly ChatMessage[], slot: string): ChatMessage[] {
  return messages.filter((m) => slotOf(m) === slot);
}
