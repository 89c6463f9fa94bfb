/**
 * One shape for the room's events, whichever way they reached us: live Socket.IO
 * events (camelCase payloads) or raw log entries from a catch-up or the replay stream
 * (snake_case `data`). The ordering logic only ever sees `RoomEvent`.
 */
import type {
  AiAudioPayload,
  AiStartPayload,
  AiTextChunkPayload,
  MessageStatus,
  RawEvent,
  WireMessage,
} from "../api/protocol";

/** A transcript entry as the client keeps it. */
export interface ChatMessage {
  id: string;
  username: string;
  content: string;
  timestamp: string;
  isAI: boolean;
  audioUrl: string | null;
  status: MessageStatus;
  /** Version at which the message entered the log, as far as we know it. */
  firstVersion: number;
  source: "text" | "voice";
  error: string | null;
  /** Why the reply's voice is missing or was cut short (from its `reply.audio`). */
  voiceError?: string | null;
  /** The sender's idempotency key, so the sender can match its outbox entry. */
  clientId?: string | null;
  /** The tree: changed by its author; deleted for good (the text is gone). */
  edited?: boolean;
  deleted?: boolean;
  /** A regenerated reply: the first reply of its slot. */
  alternativeOf?: string | null;
  /** The alternative its slot shows (true outside slots). */
  chosen?: boolean;
}

export type RoomEvent =
  | { version: number; kind: "posted"; message: ChatMessage }
  | {
      version: number;
      kind: "started";
      id: string;
      username: string;
      timestamp: string;
      alternativeOf?: string | null;
    }
  | { version: number; kind: "edited"; id: string; content: string }
  | { version: number; kind: "deleted"; id: string }
  | { version: number; kind: "chosen"; id: string }
  | { version: number; kind: "chunk"; id: string; index: number; text: string }
  | { version: number; kind: "audio"; id: string; audioUrl: string | null; error?: string | null }
  | {
      version: number;
      kind: "completed";
      id: string;
      content: string;
      status: MessageStatus;
      error: string | null;
      audioUrl?: string | null;
    }
  /** room.created or a type this client does not know: it only moves the version on. */
  | { version: number; kind: "other" };

const STATUSES: readonly MessageStatus[] = [
  "complete",
  "stopped",
  "failed",
  "interrupted",
  "truncated",
  "filtered",
  "streaming",
];

export function asStatus(value: unknown): MessageStatus {
  return STATUSES.includes(value as MessageStatus) ? (value as MessageStatus) : "complete";
}

export function fromWireMessage(m: WireMessage): ChatMessage {
  return {
    id: m.id,
    username: m.username,
    content: m.content ?? "",
    timestamp: m.timestamp,
    isAI: Boolean(m.isAI),
    audioUrl: m.audioUrl ?? null,
    status: asStatus(m.status),
    // The wire gives the version of the last event that touched it; for ordering and paging
    // that is close enough (a page overlap is deduplicated).
    firstVersion: m.version,
    source: m.source ?? (!m.isAI && m.audioUrl ? "voice" : "text"),
    error: m.error ?? null,
    clientId: m.clientId ?? null,
    edited: Boolean(m.edited),
    deleted: Boolean(m.deleted),
    alternativeOf: m.alternativeOf ?? null,
    chosen: m.chosen ?? true,
  };
}

export type LiveEventName =
  | "message"
  | "aiStart"
  | "aiTextChunk"
  | "aiAudio"
  | "aiComplete"
  | "messageEdited"
  | "messageDeleted"
  | "alternativeChosen";
export const LIVE_EVENTS: readonly LiveEventName[] = [
  "message",
  "aiStart",
  "aiTextChunk",
  "aiAudio",
  "aiComplete",
  "messageEdited",
  "messageDeleted",
  "alternativeChosen",
];

/** A live Socket.IO event as a RoomEvent, or null when the payload is unusable. */
export function fromLive(name: LiveEventName, payload: unknown): RoomEvent | null {
  if (typeof payload !== "object" || payload === null) return null;
  const p = payload as Record<string, unknown>;
  if (typeof p.version !== "number") return null;
  const version = p.version;
  switch (name) {
    case "message":
      return { version, kind: "posted", message: fromWireMessage(p as unknown as WireMessage) };
    case "aiStart": {
      const s = p as unknown as AiStartPayload;
      return {
        version,
        kind: "started",
        id: s.messageId,
        username: s.username,
        timestamp: s.timestamp,
        alternativeOf: s.alternativeOf ?? null,
      };
    }
    case "messageEdited":
      return { version, kind: "edited", id: str(p.messageId), content: str(p.content) };
    case "messageDeleted":
      return { version, kind: "deleted", id: str(p.messageId) };
    case "alternativeChosen":
      return { version, kind: "chosen", id: str(p.messageId) };
    case "aiTextChunk": {
      const c = p as unknown as AiTextChunkPayload;
      return { version, kind: "chunk", id: c.messageId, index: c.index, text: c.chunk ?? "" };
    }
    case "aiAudio": {
      const a = p as unknown as AiAudioPayload;
      return {
        version,
        kind: "audio",
        id: a.messageId,
        audioUrl: a.audioUrl ?? null,
        error: a.error ?? null,
      };
    }
    case "aiComplete": {
      const m = p as unknown as WireMessage;
      return {
        version,
        kind: "completed",
        id: m.id,
        content: m.content ?? "",
        status: asStatus(m.status),
        error: m.error ?? null,
        audioUrl: m.audioUrl,
      };
    }
  }
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const strOrNull = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** A raw log entry ({version, type, data, recordedAt}) as a RoomEvent. */
export function fromRaw(raw: RawEvent): RoomEvent {
  const d = raw.data ?? {};
  const version = raw.version;
  switch (raw.type) {
    case "message.posted": {
      const audioUrl = strOrNull(d.audio_url);
      return {
        version,
        kind: "posted",
        message: {
          id: str(d.message_id),
          username: str(d.username),
          content: str(d.content),
          timestamp: raw.recordedAt,
          isAI: false,
          audioUrl,
          status: "complete",
          firstVersion: version,
          source: d.source === "voice" ? "voice" : "text",
          error: null,
          clientId: strOrNull(d.client_id),
        },
      };
    }
    case "reply.started":
      return {
        version,
        kind: "started",
        id: str(d.message_id),
        username: str(d.character),
        timestamp: raw.recordedAt,
        alternativeOf: strOrNull(d.alternative_of),
      };
    case "message.edited":
      return { version, kind: "edited", id: str(d.message_id), content: str(d.content) };
    case "message.redacted":
      return { version, kind: "deleted", id: str(d.message_id) };
    case "reply.chosen":
      return { version, kind: "chosen", id: str(d.message_id) };
    case "message.imported":
      return {
        version,
        kind: "posted",
        message: {
          id: str(d.message_id),
          username: str(d.username),
          content: str(d.content),
          timestamp: strOrNull(d.original_at) ?? raw.recordedAt,
          isAI: d.is_ai === true,
          audioUrl: null,
          status: asStatus(d.status),
          firstVersion: version,
          source: "text",
          error: null,
        },
      };
    case "reply.chunk":
      return {
        version,
        kind: "chunk",
        id: str(d.message_id),
        index: typeof d.index === "number" ? d.index : 0,
        text: str(d.text),
      };
    case "reply.audio":
      return {
        version,
        kind: "audio",
        id: str(d.message_id),
        audioUrl: strOrNull(d.audio_url),
        error: strOrNull(d.error),
      };
    case "reply.completed":
      return {
        version,
        kind: "completed",
        id: str(d.message_id),
        content: str(d.content),
        status: asStatus(d.status),
        error: strOrNull(d.error),
      };
    default:
      return { version, kind: "other" };
  }
}
