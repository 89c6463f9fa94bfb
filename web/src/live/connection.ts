/**
 * One person's live link to one room: the Socket.IO connection, joining and rejoining
 * with `since`, resync on request of the sync module, presence, and sending.
 *
 * Ordering decisions all live in RoomSync; this class only moves messages between it
 * and the socket, and keeps a small status (connection state, members, outbox) for the UI.
 */
import { io, type Socket } from "socket.io-client";
import type {
  AckError,
  JoinAck,
  Kicked,
  PresencePayload,
  RoomChanged,
  SendAck,
  TypingPayload,
  WireMessage,
} from "../api/protocol";
import { loadOutbox, memberKey, myRoom, saveOutbox } from "../lib/identity";
import { fromLive, LIVE_EVENTS } from "../sync/events";
import { RoomSync } from "../sync/roomState";
import { Throttle, TypingPeople } from "./typing";

export type ConnectionState = "connecting" | "live" | "reconnecting";

export interface OutgoingMessage {
  clientId: string;
  kind: "text" | "voice";
  content: string;
  /** `waiting`: held back until the server's `retryAfter` has passed (`holdUntil`). */
  state: "sending" | "waiting" | "failed";
  error: string | null;
  /** The failure's code: `offline` and `timeout` are sent again by themselves on rejoin. */
  errorCode?: string;
  /** Set once the server accepted it; the entry goes when the transcript shows that id. */
  messageId: string | null;
  /** Kept for a retry of a voice message. */
  audio?: { bytes: ArrayBuffer; mimeType: string };
}

export interface ConnectionStatus {
  state: ConnectionState;
  /** How many messages this person has sent from this page. */
  sent: number;
  members: readonly string[];
  outbox: readonly OutgoingMessage[];
  /** A problem that stops the room from working (e.g. a refused join), for the person. */
  fatal: string | null;
  /** What kind of problem: `name_taken` (choose another name), `kicked`, or another code. */
  fatalCode: string | null;
  /** Who the server takes this page for, once joined. */
  you: { username: string; role: "host" | "member" } | null;
  /** The members who host the room. */
  hosts: readonly string[];
  locked: boolean;
  /** The room's name as its host last set it (null: not renamed while here). */
  roomName: string | null;
  /** Sending is paused until this time (ms since the epoch): the server said to slow down. */
  holdUntil: number | null;
}

const ACK_TIMEOUT_MS = 10_000;
const VOICE_ACK_TIMEOUT_MS = 60_000; // transcription takes a while
const JOIN_RETRY_MS = 1_500;
/** Error codes that a retry cannot fix. */
const FATAL_JOIN_CODES = new Set(["bad_request", "forbidden", "not_found"]);

/** Codes after which the same request (same clientId) is simply sent again later. */
const RESEND_CODES = new Set(["offline", "timeout"]);

export class AckFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** For `rate_limited`: how long the server asks us to wait. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function newClientId(): string {
  return typeof crypto.randomUUID === "function"
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class RoomConnection {
  readonly sync: RoomSync;
  /** Who else is writing right now ("Alice is typing…"). */
  readonly typing = new TypingPeople();
  private readonly typingNotice = new Throttle(() =>
    this.socket.emit("typing", { roomId: this.roomId }, () => {}),
  );
  private readonly socket: Socket;
  private status: ConnectionStatus = {
    state: "connecting",
    sent: 0,
    members: [],
    outbox: [],
    fatal: null,
    fatalCode: null,
    you: null,
    hosts: [],
    locked: false,
    roomName: null,
    holdUntil: null,
  };
  /** True between a join's ack and the next disconnect: only then is the outbox sent. */
  private joined = false;
  private pumping = false;
  private readonly listeners = new Set<() => void>();
  /** Bumped on every (re)join so that a stale answer is ignored. */
  private joinAttempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private everJoined = false;
  private stopped = false;
  private readonly unsubscribeSync: () => void;
  private readonly token: string | undefined;

  constructor(
    readonly roomId: string,
    readonly username: string,
    options: { url?: string; token?: string } = {},
  ) {
    this.token = options.token;
    this.sync = new RoomSync(roomId, { requestResync: (since) => void this.resync(since) });
    this.socket = io(options.url ?? "/", {
      path: "/socket.io",
      // WebSocket only: with several server processes behind one address, long-polling's
      // separate requests could land on different processes (no sticky sessions needed).
      transports: ["websocket"],
      autoConnect: false,
      reconnectionDelay: 500,
      reconnectionDelayMax: 3_000,
    });
    this.socket.on("connect", () => void this.join());
    this.socket.on("disconnect", (reason) => {
      this.joinAttempt++;
      this.joined = false;
      this.setStatus({ state: "reconnecting" });
      // After a server-side disconnect Socket.IO does not come back by itself.
      if (reason === "io server disconnect" && !this.stopped) this.socket.connect();
    });
    for (const name of LIVE_EVENTS) {
      this.socket.on(name, (payload: unknown) => {
        if (!isForRoom(payload, roomId)) return;
        const event = fromLive(name, payload);
        if (event) this.sync.receive(event);
      });
    }
    this.socket.on("presence", (p: PresencePayload) => {
      if (p?.roomId === roomId && Array.isArray(p.members))
        this.setStatus({ members: p.members, hosts: Array.isArray(p.hosts) ? p.hosts : [] });
    });
    this.listenForTyping();
    this.socket.on("roomChanged", (p: RoomChanged) => {
      if (p?.roomId === roomId) this.setStatus({ roomName: p.name, locked: p.locked });
    });
    this.socket.on("kicked", (p: Kicked) => {
      if (p?.roomId !== roomId) return;
      // Removed by the host: this name's key may not come back, so stop trying.
      this.stopped = true;
      this.socket.disconnect();
      this.setStatus({ fatal: `${p.by} removed you from this room`, fatalCode: "kicked" });
    });
    // What waited to be sent when this page was last closed goes first, in its order.
    const stored = loadOutbox(roomId, username).map((m): OutgoingMessage => ({
      ...m,
      kind: "text",
      state: "sending",
      error: null,
      messageId: null,
    }));
    if (stored.length) this.status = { ...this.status, outbox: stored };
    // A sent message leaves the outbox once the transcript shows it.
    this.unsubscribeSync = this.sync.subscribe(() => this.pruneOutbox());
  }

  start(): void {
    this.stopped = false;
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    this.socket.connect();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // No leaveRoom: the server drops a closed socket from the room and its presence.
    this.socket.disconnect();
    this.unsubscribeSync();
    this.sync.dispose();
    this.typing.dispose();
    this.listeners.clear();
  }

  // --- status for the UI ------------------------------------------------------------

  getStatus = (): ConnectionStatus => this.status;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private setStatus(patch: Partial<ConnectionStatus>): void {
    const before = this.status.outbox;
    this.status = { ...this.status, ...patch };
    if (patch.outbox && patch.outbox !== before) {
      // Kept across reloads: text not yet seen in the transcript (voice is too big to keep).
      saveOutbox(
        this.roomId,
        this.username,
        this.status.outbox
          .filter((m) => m.kind === "text")
          .map((m) => ({ clientId: m.clientId, content: m.content })),
      );
    }
    for (const l of this.listeners) l();
  }

  // --- joining ----------------------------------------------------------------------

  /** After a refused join: the person asks to try once more (a token may have been fixed). */
  retryJoin(): void {
    this.setStatus({ fatal: null, fatalCode: null });
    if (this.socket.connected) void this.join();
    else this.socket.connect();
  }

  private async join(): Promise<void> {
    const attempt = ++this.joinAttempt;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.setStatus({ state: this.everJoined ? "reconnecting" : "connecting" });
    this.sync.beginJoin();
    try {
      const ack = await this.call<JoinAck>("joinRoom", {
        roomId: this.roomId,
        username: this.username,
        since: this.sync.since,
        token: this.token,
        // The key that holds this browser's names; the host token of a room it created.
        memberKey: memberKey(),
        hostToken: myRoom(this.roomId)?.hostToken ?? undefined,
      });
      if (attempt !== this.joinAttempt) return;
      this.sync.applyAck(ack);
      this.everJoined = true;
      this.joined = true;
      this.setStatus({
        state: "live",
        fatal: null,
        fatalCode: null,
        you: ack.you ?? this.status.you,
        locked: ack.locked ?? this.status.locked,
      });
      this.retryOutbox();
    } catch (error) {
      if (attempt !== this.joinAttempt) return;
      this.sync.ackFailed();
      if (error instanceof AckFailure && FATAL_JOIN_CODES.has(error.code)) {
        const taken = error.code === "forbidden" && error.message.includes("is taken in this room");
        const reserved = error.code === "forbidden" && error.message.includes("character");
        this.setStatus({ fatal: error.message, fatalCode: taken || reserved ? "name_taken" : error.code });
        return;
      }
      // Transient (timeout, unavailable, rate limited): try again while connected.
      const wait = error instanceof AckFailure && error.retryAfterMs ? error.retryAfterMs : JOIN_RETRY_MS;
      this.retryTimer = setTimeout(() => {
        if (this.socket.connected && attempt === this.joinAttempt) void this.join();
      }, wait);
    }
  }

  private async resync(since: number): Promise<void> {
    const attempt = this.joinAttempt;
    if (!this.socket.connected) {
      // The rejoin after reconnecting asks for the same thing.
      this.sync.ackFailed();
      return;
    }
    try {
      const ack = await this.call<JoinAck>("resync", { roomId: this.roomId, since });
      if (attempt !== this.joinAttempt) return;
      this.sync.applyAck(ack);
    } catch {
      if (attempt === this.joinAttempt) this.sync.ackFailed();
    }
  }

  // --- connectivity hints from the browser --------------------------------------------

  /** The browser knows it is offline: say so now rather than after a ping timeout. */
  private readonly onOffline = (): void => {
    if (this.socket.connected) this.socket.io.engine?.close();
    this.setStatus({ state: "reconnecting" });
  };

  /** Back online: try at once instead of waiting out the reconnection back-off. */
  private readonly onOnline = (): void => {
    if (this.socket.connected || this.stopped) return;
    this.socket.disconnect();
    this.socket.connect();
  };

  // --- typing (ephemeral: never logged, nothing to retry) -------------------------------

  private listenForTyping(): void {
    this.socket.on("typing", (p: TypingPayload) => {
      // Our own name comes only from this person's other tabs: they know they are typing.
      if (p?.roomId === this.roomId && typeof p.username === "string" && p.username !== this.username) {
        this.typing.seen(p.username);
      }
    });
    // Their message arrived: they are done typing it.
    this.socket.on("message", (m: WireMessage) => {
      if (m?.roomId === this.roomId && typeof m.username === "string") this.typing.stopped(m.username);
    });
    this.socket.on("presence", (p: PresencePayload) => {
      if (p?.roomId === this.roomId && Array.isArray(p.members)) this.typing.keepOnly(p.members);
    });
    this.socket.on("disconnect", () => this.typing.clear());
  }

  /** The person is writing: tell the room, at most once per two seconds while they go on. */
  notifyTyping(): void {
    if (this.socket.connected && this.status.state === "live" && !this.status.fatal) this.typingNotice.poke();
  }

  // --- sending ----------------------------------------------------------------------

  sendMessage(content: string): void {
    // The others drop this person's name when the message arrives; new words are news.
    this.typingNotice.reset();
    this.enqueue({
      clientId: newClientId(),
      kind: "text",
      content,
      state: "sending",
      error: null,
      messageId: null,
    });
  }

  sendVoice(bytes: ArrayBuffer, mimeType: string): void {
    this.enqueue({
      clientId: newClientId(),
      kind: "voice",
      content: "",
      state: "sending",
      error: null,
      messageId: null,
      audio: { bytes, mimeType },
    });
  }

  /** Send a failed message again; the same clientId means the server never doubles it. */
  retry(clientId: string): void {
    this.updateOutbox(clientId, { state: "sending", error: null, errorCode: undefined });
    this.pump();
  }

  discard(clientId: string): void {
    this.setStatus({ outbox: this.status.outbox.filter((m) => m.clientId !== clientId) });
    this.pump();
  }

  async stopGeneration(messageId: string): Promise<void> {
    await this.call("stopGeneration", { roomId: this.roomId, messageId });
  }

  // The tree: every answer reaches the room as a live event; the acks only say it worked.
  async regenerate(messageId: string): Promise<void> {
    await this.call("regenerate", { roomId: this.roomId, messageId });
  }

  async chooseAlternative(messageId: string): Promise<void> {
    await this.call("chooseAlternative", { roomId: this.roomId, messageId });
  }

  async editMessage(messageId: string, content: string): Promise<void> {
    await this.call("editMessage", { roomId: this.roomId, messageId, content });
  }

  async deleteMessage(messageId: string, reason?: string): Promise<void> {
    await this.call("deleteMessage", { roomId: this.roomId, messageId, ...(reason ? { reason } : {}) });
  }

  /** Change the room's cast (the host's act); every member hears `roomChanged`. */
  async setCast(cast: string[], replyMode: "single" | "all"): Promise<void> {
    await this.call("setCast", { roomId: this.roomId, cast, replyMode });
  }

  /** Hear the room's settings change (its cast, reply mode, name); returns the unsubscribe. */
  onRoomChanged(
    listener: (payload: { cast?: unknown; replyMode?: unknown; name?: unknown }) => void,
  ): () => void {
    const handler = (p: { roomId?: string; cast?: unknown; replyMode?: unknown; name?: unknown }) => {
      if (p?.roomId === this.roomId) listener(p);
    };
    this.socket.on("roomChanged", handler);
    return () => void this.socket.off("roomChanged", handler);
  }

  // --- the host's acts (the server refuses them to anyone else) -------------------------

  async kick(username: string): Promise<void> {
    await this.call("kickMember", { roomId: this.roomId, username });
  }

  async setLocked(locked: boolean): Promise<void> {
    await this.call("lockRoom", { roomId: this.roomId, locked });
  }

  async rename(name: string): Promise<void> {
    await this.call("renameRoom", { roomId: this.roomId, name });
  }

  private enqueue(item: OutgoingMessage): void {
    this.setStatus({ outbox: [...this.status.outbox, item], sent: this.status.sent + 1 });
    this.pump();
  }

  private pump(): void {
    if (!this.pumping) void this.runPump();
  }

  /**
   * Sends the outbox strictly in order, one message at a time: the next goes only once the
   * one before it was accepted. Refused with `rate_limited`, the message and every one after
   * it wait until the server's `retryAfter` has passed; offline, they wait for the rejoin.
   * A message refused for good (too long, say) is marked failed and the rest go on.
   */
  private async runPump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.stopped && this.joined) {
        const item = this.status.outbox.find((m) => m.messageId === null && m.state !== "failed");
        if (!item) return;
        this.updateOutbox(item.clientId, { state: "sending", error: null, errorCode: undefined });
        try {
          const ack = await this.post(item);
          this.updateOutbox(item.clientId, {
            messageId: ack.messageId,
            content: "content" in ack ? ack.content : item.content,
          });
          this.pruneOutbox();
        } catch (error) {
          const failure = error instanceof AckFailure ? error : new AckFailure("unknown", String(error));
          if (failure.code === "rate_limited") {
            const wait = Math.max(failure.retryAfterMs ?? 1000, 100);
            this.updateOutbox(item.clientId, { state: "waiting", error: failure.message });
            this.setStatus({ holdUntil: Date.now() + wait });
            await sleep(wait);
            this.setStatus({ holdUntil: null });
            continue;
          }
          this.updateOutbox(item.clientId, {
            state: "failed",
            error: failure.message,
            errorCode: failure.code,
          });
          // Offline or slow: this one and the ones after it wait for the rejoin, in order.
          if (RESEND_CODES.has(failure.code)) return;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private post(item: OutgoingMessage): Promise<SendAck> {
    if (item.kind === "voice" && item.audio) {
      const { bytes, mimeType } = item.audio;
      const payload = { roomId: this.roomId, audio: bytes, mimeType, clientId: item.clientId };
      return this.call<SendAck>("sendVoiceMessage", payload, VOICE_ACK_TIMEOUT_MS);
    }
    return this.call<SendAck>("sendMessage", {
      roomId: this.roomId,
      content: item.content,
      clientId: item.clientId,
    });
  }

  /** After a rejoin, send again what failed only because the connection was down or slow. */
  private retryOutbox(): void {
    this.setStatus({
      outbox: this.status.outbox.map((m) =>
        m.state === "failed" && RESEND_CODES.has(m.errorCode ?? "")
          ? { ...m, state: "sending", error: null, errorCode: undefined }
          : m,
      ),
    });
    this.pump();
  }

  private updateOutbox(clientId: string, patch: Partial<OutgoingMessage>): void {
    this.setStatus({
      outbox: this.status.outbox.map((m) => (m.clientId === clientId ? { ...m, ...patch } : m)),
    });
  }

  private pruneOutbox(): void {
    if (this.status.outbox.length === 0) return;
    const shown = new Set<string>();
    for (const m of this.sync.getView().messages) {
      shown.add(m.id);
      if (m.clientId) shown.add(m.clientId);
    }
    const outbox = this.status.outbox.filter(
      (m) => !shown.has(m.clientId) && !(m.messageId && shown.has(m.messageId)),
    );
    if (outbox.length !== this.status.outbox.length) this.setStatus({ outbox });
  }

  // --- the ack convention: {ok: true, ...} or {ok: false, error} -----------------------

  /** Emit with an ack; resolve with the `{ok: true}` answer, reject with an AckFailure. */
  private async call<T>(event: string, payload: object, timeoutMs = ACK_TIMEOUT_MS): Promise<T> {
    if (!this.socket.connected) throw new AckFailure("offline", OFFLINE_MESSAGE);
    let answer: { ok?: unknown; error?: AckError["error"] } | null;
    try {
      answer = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      if (!this.socket.connected) throw new AckFailure("offline", OFFLINE_MESSAGE);
      throw new AckFailure("timeout", "The server did not answer in time.");
    }
    if (!answer || answer.ok !== true) {
      const error: AckError["error"] & { retryAfter?: number } = answer?.error ?? {
        code: "unknown",
        message: "The server refused.",
      };
      const retryAfter = typeof error.retryAfter === "number" ? error.retryAfter * 1000 : null;
      throw new AckFailure(error.code, error.message, retryAfter);
    }
    return answer as unknown as T;
  }
}

const OFFLINE_MESSAGE = "Not connected; will send when back online.";

function isForRoom(payload: unknown, roomId: string): boolean {
  // Payloads that name a room must name ours; aiTextChunk and aiAudio carry no roomId.
  const r = (payload as { roomId?: unknown } | null)?.roomId;
  return r === undefined || r === roomId;
}
