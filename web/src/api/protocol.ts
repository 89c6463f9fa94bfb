/**
 * Wire types of the tomchat protocol. Field names are the server's; nothing here has
 * behaviour.
 */

import type {
  AiAudio,
  AiStart,
  AiTextChunk,
  CatchUpAck,
  ErrorAck,
  Message,
  MessagePage,
  Presence,
  SendAck as MessageAck,
  SnapshotAck,
  Streaming,
  Typing,
  VoiceAck,
} from "./wire.gen";

// The payload types are generated from the server's (src/tomchat/wire/payloads.py) by
// scripts/gen-wire-types; the names below are the ones the client has always used.
export type {
  Acks,
  CatchUpAck,
  ErrorBody,
  Kicked,
  OkAck,
  RawEvent,
  RoomChanged,
  ServerEvents,
  SnapshotAck,
  VoiceAck,
  You,
} from "./wire.gen";

/** A user message or a reply, as `messages[]`, `message` and `aiComplete` carry it. */
export type WireMessage = Message;
/** `streaming` is the projection's status of a reply still being written. */
export type MessageStatus = Message["status"];
export type ReplyStatus = Exclude<MessageStatus, "streaming">;

/** A reply still being written, as a join snapshot's `streaming[]` lists it. */
export type WireStreaming = Streaming;

export type AckError = ErrorAck;

/** What `joinRoom` and `resync` answer. */
export type JoinAck = SnapshotAck | CatchUpAck;

export function isCatchUp(ack: JoinAck): ack is CatchUpAck {
  return Array.isArray((ack as CatchUpAck).events);
}

// Live server → client payloads.
export type AiStartPayload = AiStart;
export type AiTextChunkPayload = AiTextChunk;
export type AiAudioPayload = AiAudio;
export type PresencePayload = Presence;
export type TypingPayload = Typing;

/** What `sendMessage` and `sendVoiceMessage` answer. */
export type SendAck = MessageAck | VoiceAck;

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
  /** The characters who answer in the room, at the revisions it uses. */
  cast?: CastMember[];
  replyMode?: "single" | "all";
}

export interface CastMember {
  id: string;
  name: string;
  revision: number;
  avatarUrl: string;
}

export type MessagesPage = MessagePage;
