/**
 * Wire types of the tomchat protocol (DESIGN §2-§4). Field names are the server's;
 * nothing here has behaviour.
 */

export type ReplyStatus =
  | "complete"
  | "stopped"
  | "failed"
  | "interrupted"
  | "truncated"
  | "filtered";
/** `streaming` is the projection's status of a reply still being written. */
export type MessageStatus = ReplyStatus | "streaming";

/** A user message or a reply, as `messages[]`, `message` and `aiComplete` carry it. */
export interface WireMessage {
  id: string;
  roomId: string;
  content: string;
  username: string;
  timestamp: string;
  isAI: boolean;
  audioUrl: string | null;
  status: MessageStatus | string;
  version: number;
  /** Not in DESIGN §3 but tolerated if the server adds them. */
  source?: "text" | "voice";
  error?: string | null;
  /** On the live `message` event: the sender's idempotency key. */
  clientId?: string | null;
}

/** A reply still being written, as a join snapshot's `streaming[]` lists it. */
export interface WireStreaming {
  messageId: string;
  username: string;
  content: string;
  timestamp: string;
  /** The version of the reply's `reply.started`. */
  version: number;
  /** Set when the reply's voice arrived before the snapshot was read. */
  audioUrl?: string | null;
}

/** One entry of the room's log, as `events[]` (catch-up) and the replay stream carry it. */
export interface RawEvent {
  version: number;
  type: string;
  data: Record<string, unknown>;
  recordedAt: string;
}

export interface AckError {
  ok: false;
  error: { code: string; message: string };
}

export interface SnapshotAck {
  ok: true;
  roomId: string;
  version: number;
  messages: WireMessage[];
  streaming: WireStreaming[];
  hasMore?: boolean;
  reset?: boolean;
}

export interface CatchUpAck {
  ok: true;
  roomId: string;
  version: number;
  events: RawEvent[];
}

/** What `joinRoom` and `resync` answer. */
export type JoinAck = SnapshotAck | CatchUpAck;

export function isCatchUp(ack: JoinAck): ack is CatchUpAck {
  return Array.isArray((ack as CatchUpAck).events);
}

// Live server → client payloads (DESIGN §3).
export interface AiStartPayload {
  messageId: string;
  roomId: string;
  username: string;
  timestamp: string;
  version: number;
}
export interface AiTextChunkPayload {
  messageId: string;
  chunk: string;
  index: number;
  version: number;
}
export interface AiAudioPayload {
  messageId: string;
  audioUrl: string;
  version: number;
}
export interface PresencePayload {
  roomId: string;
  members: string[];
}

export interface SendAck {
  ok: true;
  messageId: string;
  version: number;
  content?: string;
}

/** A room as the REST API lists it. `members` may be a count or a list of names. */
export interface RoomSummary {
  id: string;
  name: string | null;
  character: string | null;
  version: number;
  createdAt: string | null;
  updatedAt: string | null;
  members: number | string[];
  /** Invite-only; private rooms are not listed, so this shows only on a room asked for by id. */
  private?: boolean;
}

export interface MessagesPage {
  messages: WireMessage[];
  nextBefore: number | null;
}
