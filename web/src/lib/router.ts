/**
 * A three-route router on the History API; the app has `/`, `/room/:id` and
 * `/room/:id/replay`, which does not justify a routing library.
 *
 * A private room's invite token travels in the link as `?token=`, so the link itself is
 * the invitation; it is kept on every in-app link to that room.
 */
import { useSyncExternalStore } from "react";

export type Route =
  | { page: "lobby" }
  | { page: "characters" }
  | { page: "room"; roomId: string; token: string | null }
  | { page: "replay"; roomId: string; token: string | null }
  | { page: "notFound" };

const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function parseRoute(pathname: string, search = ""): Route {
  const parts = pathname.split("/").filter(Boolean).map(safeDecode);
  const token = new URLSearchParams(search).get("token") || null;
  if (parts.length === 0) return { page: "lobby" };
  if (parts.length === 1 && parts[0] === "characters") return { page: "characters" };
  if (parts[0] === "room" && parts[1] && ROOM_ID.test(parts[1])) {
    if (parts.length === 2) return { page: "room", roomId: parts[1], token };
    if (parts.length === 3 && parts[2] === "replay") return { page: "replay", roomId: parts[1], token };
  }
  return { page: "notFound" };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The room a person pasted: a full link (with its token, if any), a path, or a bare id. */
export function roomFromLink(text: string): { roomId: string; token: string | null } | null {
  const t = text.trim();
  if (ROOM_ID.test(t)) return { roomId: t, token: null };
  let url: URL;
  try {
    url = new URL(t, window.location.origin);
  } catch {
    return null;
  }
  const route = parseRoute(url.pathname, url.search);
  return route.page === "room" || route.page === "replay"
    ? { roomId: route.roomId, token: route.token }
    : null;
}

const withToken = (path: string, token?: string | null) =>
  token ? `${path}?${new URLSearchParams({ token })}` : path;

export const roomPath = (roomId: string, token?: string | null) =>
  withToken(`/room/${encodeURIComponent(roomId)}`, token);

export const replayPath = (roomId: string, token?: string | null) =>
  withToken(`/room/${encodeURIComponent(roomId)}/replay`, token);

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((l) => l()));

const here = () => window.location.pathname + window.location.search;

export function navigate(path: string): void {
  if (path === here()) return;
  window.history.pushState(null, "", path);
  listeners.forEach((l) => l());
}

/** The current route; re-renders on navigation. */
export function useRoute(): Route {
  const location = useSyncExternalStore((l) => {
    listeners.add(l);
    return () => listeners.delete(l);
  }, here);
  const query = location.indexOf("?");
  return query < 0 ? parseRoute(location) : parseRoute(location.slice(0, query), location.slice(query));
}
