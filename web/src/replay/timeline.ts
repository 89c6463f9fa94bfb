/**
 * A room's log as a time line, for the replay page: where an instant of the session falls
 * in the log, what the transcript looked like at any version, which voice was speaking.
 *
 * The server paces the replay itself (SSE, `GET /api/rooms/{id}/replay`); this module only
 * answers the questions a scrubber and a pause button ask. Pure: no DOM, no network.
 */
import type { RawEvent, SnapshotAck, WireMessage, WireStreaming } from "../api/protocol";
import { asStatus } from "../sync/events";

export interface Voice {
  messageId: string;
  url: string;
  /** Seconds into the audio at the moment asked about (session time, not replay time). */
  offset: number;
}

interface Row {
  message: WireMessage;
  chunks: string[] | null; // a reply still being written: its text so far, in chunks
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const strOrNull = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** A message's tree marks before anything happened to it. */
const PLAIN = { edited: false, deleted: false, alternativeOf: null, chosen: true } as const;

export class Timeline {
  /** Versions 1…n in order; `events[i].version === i + 1`. */
  private readonly events: RawEvent[] = [];
  /** `recordedAt` of each event in milliseconds, same index. */
  private readonly times: number[] = [];

  constructor(events: Iterable<RawEvent> = []) {
    for (const e of events) this.append(e);
  }

  /** Add the next event of the log; anything else (a duplicate, a gap) is refused. */
  append(event: RawEvent): boolean {
    if (event.version !== this.events.length + 1) return false;
    const at = Date.parse(event.recordedAt);
    // A clock that stepped back must not make the line run backwards.
    const previous = this.times.length ? this.times[this.times.length - 1]! : -Infinity;
    this.events.push(event);
    this.times.push(Number.isFinite(at) ? Math.max(at, previous) : previous);
    return true;
  }

  get head(): number {
    return this.events.length;
  }

  /** The first and last instants of the session (ms since the epoch); 0 for an empty log. */
  get start(): number {
    return this.times[0] ?? 0;
  }

  get end(): number {
    return this.times[this.times.length - 1] ?? 0;
  }

  /** When version `v` was recorded; the start for version 0. */
  timeOf(version: number): number {
    if (version <= 0) return this.start;
    return this.times[Math.min(version, this.head) - 1] ?? this.start;
  }

  /** The last version recorded at or before `ms` (0 if none). Binary search. */
  versionAt(ms: number): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.times[mid]! <= ms) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The transcript at version `v` as a join snapshot, so the page's `RoomSync` can take it
   * with `applyAck` and go on from there with the replay's events. The same rules as the
   * server's projection: a reply's text is its chunks until it completes.
   */
  ackAt(roomId: string, version: number): SnapshotAck {
    const show = (rows: Map<string, Row>, slot: string, chosen: string | null) => {
      for (const row of rows.values()) {
        if ((row.message.alternativeOf ?? row.message.id) === slot) {
          row.message = { ...row.message, chosen: row.message.id === chosen };
        }
      }
    };
    const upto = Math.max(0, Math.min(version, this.head));
    const rows = new Map<string, Row>();
    for (let i = 0; i < upto; i++) {
      const { type, data: d, version: v, recordedAt } = this.events[i]!;
      const id = str(d.message_id);
      const row = rows.get(id);
      switch (type) {
        case "message.posted":
          rows.set(id, {
            message: {
              id,
              roomId,
              content: str(d.content),
              username: str(d.username),
              timestamp: recordedAt,
              isAI: false,
              audioUrl: strOrNull(d.audio_url),
              status: "complete",
              // The first version: it orders the snapshot (see RoomSync.replace).
              version: v,
              source: d.source === "voice" ? "voice" : "text",
              error: null,
              ...PLAIN,
              characterId: null,
            },
            chunks: null,
          });
          break;
        case "message.imported":
          rows.set(id, {
            message: {
              id,
              roomId,
              content: str(d.content),
              username: str(d.username),
              timestamp: strOrNull(d.original_at) ?? recordedAt,
              isAI: d.is_ai === true,
              audioUrl: null,
              status: asStatus(d.status),
              version: v,
              source: "text",
              error: null,
              ...PLAIN,
              characterId: strOrNull(d.character_id),
            },
            chunks: null,
          });
          break;
        case "message.edited":
          if (row) row.message = { ...row.message, content: str(d.content), edited: true };
          break;
        case "message.redacted":
          if (row) row.message = { ...row.message, content: "", audioUrl: null, deleted: true };
          if (row?.chunks) row.chunks = [];
          break;
        case "reply.chosen":
          if (row) show(rows, row.message.alternativeOf ?? id, id);
          break;
        case "reply.started": {
          const slot = strOrNull(d.alternative_of);
          if (slot) show(rows, slot, null);
          rows.set(id, {
            message: {
              id,
              roomId,
              content: "",
              username: str(d.character),
              timestamp: recordedAt,
              isAI: true,
              audioUrl: null,
              status: "streaming",
              version: v,
              source: "text",
              error: null,
              // Each reply names its character (replies from before casts: by name only).
              characterId: strOrNull(d.character_id),
              ...PLAIN,
              alternativeOf: slot,
            },
            chunks: [],
          });
          break;
        }
        case "reply.chunk":
          row?.chunks?.push(str(d.text));
          break;
        case "reply.audio":
          if (row) row.message = { ...row.message, audioUrl: strOrNull(d.audio_url) };
          break;
        case "reply.completed":
          if (row) {
            row.message = {
              ...row.message,
              content: str(d.content),
              status: asStatus(d.status),
              error: strOrNull(d.error),
            };
            row.chunks = null;
          }
          break;
      }
    }
    const messages: WireMessage[] = [];
    const streaming: WireStreaming[] = [];
    for (const { message: m, chunks } of rows.values()) {
      if (chunks === null) {
        messages.push(m);
      } else {
        streaming.push({
          messageId: m.id,
          roomId: m.roomId,
          username: m.username,
          content: chunks.join(""),
          timestamp: m.timestamp,
          version: m.version,
          audioUrl: m.audioUrl,
          alternativeOf: m.alternativeOf,
        });
      }
    }
    return { ok: true, roomId, version: upto, messages, streaming, hasMore: false };
  }

  /**
   * The reply voice that would be sounding at instant `ms`, with the log at version `v`:
   * the newest reply's audio that started by then, and how far into it we are. Whether
   * that is past its end is for the audio element to find out (durations are not logged
   * for every voice).
   */
  voiceAt(version: number, ms: number): Voice | null {
    const seen = new Set<string>();
    let latest: { messageId: string; url: string; at: number } | null = null;
    for (let i = 0; i < Math.min(version, this.head); i++) {
      const { type, data } = this.events[i]!;
      if (type !== "reply.audio") continue;
      const id = str(data.message_id);
      const url = strOrNull(data.audio_url);
      // The server logs a voice twice (when it starts, then its final size): the first one
      // is when it began to play.
      if (!url || seen.has(id)) continue;
      seen.add(id);
      latest = { messageId: id, url, at: this.times[i]! };
    }
    if (!latest) return null;
    const offset = Math.max(0, (ms - latest.at) / 1000);
    const length = this.durationOf(latest.messageId);
    return length !== null && offset >= length
      ? null
      : { messageId: latest.messageId, url: latest.url, offset };
  }

  /** A reply voice's length in seconds, if the log says (its last `reply.audio` does). */
  private durationOf(messageId: string): number | null {
    let found: number | null = null;
    for (const { type, data } of this.events) {
      if (type === "reply.audio" && data.message_id === messageId && typeof data.duration_ms === "number") {
        found = data.duration_ms / 1000;
      }
    }
    return found;
  }
}

/** `ms` of session time as `h:mm:ss` (or `m:ss`) for the scrubber's labels. */
export function duration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Read an ndjson body line by line as it arrives (the server streams `/events` so). */
export async function* ndjsonLines<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffered += decoder.decode(value ?? new Uint8Array(), { stream: !done });
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) yield JSON.parse(line) as T;
      newline = buffered.indexOf("\n");
    }
    if (done) break;
  }
  if (buffered.trim()) yield JSON.parse(buffered) as T;
}
