/**
 * One person's live link to one room: the Socket.IO connection, joining and rejoining
 * with `since`, resync on request of the sync module, presence, and sending.
 *
 * Ordering decisions all live in RoomSync; this class only moves messages between it
 * and the socket, and keeps a small status (connection state, members, outbox) for the UI.
 */
import { io, type Socket } from "socket.io-client";
import type { AckError, JoinAck, PresencePayload, SendAck } from "../api/protocol";
import { fromLive, LIVE_EVENTS } from "../sync/events";
import { RoomSync } from "../sync/roomState";

export type ConnectionState = "connecting" | "live" | "reconnecting";

export interface OutgoingMessage {
  clientId: string;
  kind: "text" | "voice";
  content: string;
  state: "sending" | "failed";
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
}

const ACK_TIMEOUT_MS = 10_000;
const VOICE_ACK_TIMEOUT_MS = 60_000; // transcription takes a while
const JOIN_RETRY_MS = 1_500;
/** Error codes that a retry cannot fix. */
const FATAL_JOIN_CODES = new Set(["bad_request", "forbidden", "not_found"]);

/** Codes after which the same request (same clientId) is simply sent again later. */
const RESEND_CODES = new Set(["offline", "timeout"]);
/** How often a rate-limited message waits and tries again before it is shown as failed. */
const RATE_LIMIT_TRIES = 5;

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
  private readonly socket: Socket;
  private status: ConnectionStatus = { state: "connecting", sent: 0, members: [], outbox: [], fatal: null };
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
      if (p?.roomId === roomId && Array.isArray(p.members)) this.setStatus({ members: p.members });
    });
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
    this.listeners.clear();
  }

  // --- status for the UI ------------------------------------------------------------

  getStatus = (): ConnectionStatus => this.status;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private setStatus(patch: Partial<ConnectionStatus>): void {
    this.status = { ...this.status, ...patch };
    for (const l of this.listeners) l();
  }

  // --- joining ----------------------------------------------------------------------

  /** After a refused join: the person asks to try once more (a token may have been fixed). */
  retryJoin(): void {
    this.setStatus({ fatal: null });
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
      });
      if (attempt !== this.joinAttempt) return;
      this.sync.applyAck(ack);
      this.everJoined = true;
      this.setStatus({ state: "live", fatal: null });
      this.retryOutbox();
    } catch (error) {
      if (attempt !== this.joinAttempt) return;
      this.sync.ackFailed();
      if (error instanceof AckFailure && FATAL_JOIN_CODES.has(error.code)) {
        this.setStatus({ fatal: error.message });
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

  // --- sending ----------------------------------------------------------------------

  sendMessage(content: string): void {
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
    const item = this.status.outbox.find((m) => m.clientId === clientId);
    if (item) this.deliver({ ...item, state: "sending", error: null });
  }

  discard(clientId: string): void {
    this.setStatus({ outbox: this.status.outbox.filter((m) => m.clientId !== clientId) });
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

  private enqueue(item: OutgoingMessage): void {
    this.setStatus({ outbox: [...this.status.outbox, item], sent: this.status.sent + 1 });
    this.deliver(item);
  }

  private async deliver(item: OutgoingMessage): Promise<void> {
    this.updateOutbox(item.clientId, { state: "sending", error: null, errorCode: undefined });
    for (let tries = 1; ; tries++) {
      try {
        const ack = await this.post(item);
        this.updateOutbox(item.clientId, {
          messageId: ack.messageId,
          content: "content" in ack ? ack.content : item.content,
        });
        this.pruneOutbox();
        return;
      } catch (error) {
        const failure = error instanceof AckFailure ? error : new AckFailure("unknown", String(error));
        // Asked to slow down: wait as long as the server says, then the same request again.
        if (failure.code === "rate_limited" && tries < RATE_LIMIT_TRIES && !this.stopped) {
          await sleep(Math.min(failure.retryAfterMs ?? 1000, 10_000));
          continue;
        }
        this.updateOutbox(item.clientId, {
          state: "failed",
          error: failure.message,
          errorCode: failure.code,
        });
        return;
      }
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
    for (const item of this.status.outbox) {
      if (item.state === "failed" && RESEND_CODES.has(item.errorCode ?? "")) this.retry(item.clientId);
    }
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
