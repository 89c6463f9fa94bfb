/**
 * A three-route router on the History API; the app has `/`, `/room/:id` and
 * `/room/:id/replay`, which does not justify a routing library.
 */
import { useSyncExternalStore } from "react";

export type Route =
  | { page: "lobby" }
  | { page: "room"; roomId: string }
  | { page: "replay"; roomId: string }
  | { page: "notFound" };

const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function parseRoute(pathname: string): Route {
  const parts = pathname.split("/").filter(Boolean).map(safeDecode);
  if (parts.length === 0) return { page: "lobby" };
  if (parts[0] === "room" && parts[1] && ROOM_ID.test(parts[1])) {
    if (parts.length === 2) return { page: "room", roomId: parts[1] };
    if (parts.length === 3 && parts[2] === "replay") return { page: "replay", roomId: parts[1] };
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

/** A room id from what a person pasted: a full link, a path, or the bare id. */
export function roomIdFromLink(text: string): string | null {
  const t = text.trim();
  if (ROOM_ID.test(t)) return t;
  let path = t;
  try {
    path = new URL(t, window.location.origin).pathname;
  } catch {
    /* not a URL: try it as a path */
  }
  const route = parseRoute(path);
  return route.page === "room" || route.page === "replay" ? route.roomId : null;
}

export const roomPath = (roomId: string) => `/room/${encodeURIComponent(roomId)}`;

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((l) => l()));

export function navigate(path: string): void {
  if (path === window.location.pathname) return;
  window.history.pushState(null, "", path);
  listeners.forEach((l) => l());
}

export function usePathname(): string {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => window.location.pathname,
  );
}
