import type { CSSProperties } from "react";

/**
 * Who this browser is: the member key that holds its names in rooms (made once, kept in
 * localStorage), the rooms it created or joined ("My rooms", with the tokens that open
 * them), and a colour for each person's name.
 */
const KEY_STORE = "tomchat.memberKey";
const ROOMS_STORE = "tomchat.myRooms";
const MAX_MY_ROOMS = 50;

function read(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled
  }
}

function write(key: string, value: string | null): void {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* storage disabled or full: the browser forgets, nothing else breaks */
  }
}

let memoryKey: string | null = null;

/** This browser's member key: 43 characters of 256 random bits (the server takes 16-128). */
export function memberKey(): string {
  const stored = read(KEY_STORE) ?? memoryKey;
  if (stored && stored.length >= 16) return stored;
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  const made = btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
  memoryKey = made;
  write(KEY_STORE, made);
  return made;
}

export interface MyRoom {
  id: string;
  name: string;
  /** A private room's invite token. */
  token: string | null;
  /** Given to the browser that created the room with the form: it hosts the room. */
  hostToken: string | null;
  /** When this browser last was there (ISO time). */
  at: string;
}

export function myRooms(): MyRoom[] {
  try {
    const parsed: unknown = JSON.parse(read(ROOMS_STORE) ?? "[]");
    return Array.isArray(parsed) ? (parsed as MyRoom[]).filter((r) => typeof r?.id === "string") : [];
  } catch {
    return [];
  }
}

export function myRoom(id: string): MyRoom | null {
  return myRooms().find((r) => r.id === id) ?? null;
}

/** Remember a room (or update what is known of it); newest first. */
export function rememberRoom(room: Partial<MyRoom> & { id: string }): void {
  const old = myRoom(room.id);
  const merged: MyRoom = {
    id: room.id,
    name: room.name ?? old?.name ?? room.id,
    token: room.token !== undefined ? room.token : (old?.token ?? null),
    hostToken: room.hostToken !== undefined ? room.hostToken : (old?.hostToken ?? null),
    at: new Date().toISOString(),
  };
  const rest = myRooms().filter((r) => r.id !== room.id);
  write(ROOMS_STORE, JSON.stringify([merged, ...rest].slice(0, MAX_MY_ROOMS)));
}

export function forgetRoom(id: string): void {
  write(ROOMS_STORE, JSON.stringify(myRooms().filter((r) => r.id !== id)));
}

/** A colour of its own for each name, the same in every browser: a hue, set as
 * `--person-hue` on an element of class `person` (styles.css picks a lightness that reads
 * well on the light and the dark theme). */
export function personHue(name: string): number {
  let h = 0;
  for (const ch of name.normalize("NFKC").toLowerCase()) h = (h * 31 + ch.codePointAt(0)!) >>> 0;
  return h % 360;
}

export function personStyle(name: string): CSSProperties {
  return { "--person-hue": String(personHue(name)) } as CSSProperties;
}

// --- the outbox, kept across reloads --------------------------------------------------

export interface StoredOutgoing {
  clientId: string;
  content: string;
}

const outboxKey = (roomId: string, username: string) => `tomchat.outbox.${roomId}.${username}`;

export function loadOutbox(roomId: string, username: string): StoredOutgoing[] {
  try {
    const parsed: unknown = JSON.parse(read(outboxKey(roomId, username)) ?? "[]");
    return Array.isArray(parsed)
      ? (parsed as StoredOutgoing[]).filter(
          (m) => typeof m?.clientId === "string" && typeof m?.content === "string",
        )
      : [];
  } catch {
    return [];
  }
}

export function saveOutbox(roomId: string, username: string, items: StoredOutgoing[]): void {
  write(outboxKey(roomId, username), items.length ? JSON.stringify(items) : null);
}
