/** The few REST calls the client makes. */
import type { MessagesPage, RoomSummary } from "./protocol";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(
  path: string,
  init: RequestInit & { token?: string | null; hostToken?: string | null } = {},
): Promise<T> {
  const { token, hostToken, ...rest } = init;
  const headers: Record<string, string> = { Accept: "application/json" };
  if (rest.body) headers["Content-Type"] = "application/json";
  // A private room's invite token (the server answers 404 without it).
  if (token) headers["X-Room-Token"] = token;
  if (hostToken) headers["X-Host-Token"] = hostToken;
  const response = await fetch(path, { ...rest, headers });
  if (!response.ok) {
    // Errors are RFC 9457 problem details; fall back to the status line.
    let detail = response.statusText;
    try {
      const problem = (await response.json()) as { detail?: string; title?: string };
      detail = problem.detail ?? problem.title ?? detail;
    } catch {
      /* not JSON: keep the status text */
    }
    throw new ApiError(response.status, detail || `HTTP ${response.status}`);
  }
  return (await response.json()) as T;
}

const roomUrl = (roomId: string) => `/api/rooms/${encodeURIComponent(roomId)}`;

/** One page of the public rooms, most recently active first; `next` is the cursor of the
 * page after it (null on the last). */
export interface RoomsPage {
  rooms: RoomSummary[];
  next: string | null;
}

export function listRooms(cursor?: string | null): Promise<RoomsPage> {
  const query = cursor ? `?${new URLSearchParams({ cursor })}` : "";
  return request<RoomSummary[] | { rooms: RoomSummary[]; next?: string | null }>(`/api/rooms${query}`).then(
    (body) =>
      Array.isArray(body) ? { rooms: body, next: null } : { rooms: body.rooms, next: body.next ?? null },
  );
}

/** A new room; a private one comes back with its invite token, and every one with its host
 * token (both shown this once only). */
export function createRoom(
  name: string,
  isPrivate = false,
  cast?: string[],
  replyMode?: "single" | "all",
): Promise<RoomSummary & { token?: string | null; hostToken?: string | null }> {
  const body: Record<string, unknown> = { name, private: isPrivate };
  if (cast && cast.length > 0) body.cast = cast;
  if (replyMode) body.replyMode = replyMode;
  return request("/api/rooms", { method: "POST", body: JSON.stringify(body) });
}

/** A private room's new invite link token; the old one stops working. Host only. */
export function rotateInvite(roomId: string, hostToken: string): Promise<{ token: string }> {
  return request(`${roomUrl(roomId)}/invite`, { method: "POST", hostToken });
}

/** Whether a room exists (a private one: and this token opens it). */
export async function roomExists(roomId: string, token?: string | null): Promise<boolean> {
  try {
    await getRoom(roomId, token);
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return false;
    throw e;
  }
}

export function getRoom(roomId: string, token?: string | null): Promise<RoomSummary> {
  return request<RoomSummary>(roomUrl(roomId), { token });
}

/** A new room from this one's visible transcript at version `at` (its head if left out). */
export function forkRoom(
  roomId: string,
  from: { at: number } | { messageId: string },
  token?: string | null,
): Promise<RoomSummary & { token?: string | null }> {
  const body = from;
  return request(`${roomUrl(roomId)}/fork`, { method: "POST", body: JSON.stringify(body), token });
}

export function olderMessages(
  roomId: string,
  before: number,
  token?: string | null,
  limit = 50,
): Promise<MessagesPage> {
  const query = new URLSearchParams({ before: String(before), limit: String(limit) });
  return request<MessagesPage>(`${roomUrl(roomId)}/messages?${query}`, { token });
}

/** An audio URL the <audio> element can fetch: it cannot send headers, so the token goes in the query. */
export function mediaUrl(url: string, token?: string | null): string {
  if (!token) return url;
  const u = new URL(url, window.location.origin);
  u.searchParams.set("token", token);
  return u.origin === window.location.origin ? u.pathname + u.search : u.toString();
}
