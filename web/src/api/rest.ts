/** The few REST calls the client makes (DESIGN §4). */
import type { MessagesPage, RoomSummary } from "./protocol";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(path: string, init?: RequestInit): Promise<T> {
  const response = await fetch(path, {
    ...init,
    headers: { Accept: "application/json", ...(init?.body ? { "Content-Type": "application/json" } : {}) },
  });
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

export function listRooms(): Promise<RoomSummary[]> {
  return request<RoomSummary[] | { rooms: RoomSummary[] }>("/api/rooms").then((body) =>
    Array.isArray(body) ? body : body.rooms,
  );
}

export function createRoom(name: string): Promise<RoomSummary> {
  return request<RoomSummary>("/api/rooms", { method: "POST", body: JSON.stringify({ name }) });
}

export function olderMessages(roomId: string, before: number, limit = 50): Promise<MessagesPage> {
  const query = new URLSearchParams({ before: String(before), limit: String(limit) });
  return request<MessagesPage>(`/api/rooms/${encodeURIComponent(roomId)}/messages?${query}`);
}

export function getRoom(roomId: string): Promise<RoomSummary> {
  return request<RoomSummary>(`/api/rooms/${encodeURIComponent(roomId)}`);
}
