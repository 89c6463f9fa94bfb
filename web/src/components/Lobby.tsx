import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";
import type { RoomSummary } from "../api/protocol";
import { createRoom, listRooms, roomExists } from "../api/rest";
import { forgetRoom, type MyRoom, myRooms, rememberRoom } from "../lib/identity";
import { navigate, roomFromLink, roomPath } from "../lib/router";
import { timeAgo } from "../lib/time";
import { cleanUsername, loadUsername, MAX_USERNAME_CHARS, saveUsername } from "../lib/username";
import { CastPicker } from "./Cast";
import { Link } from "./Link";
import { ThemeToggle } from "./ThemeToggle";

const REFRESH_MS = 10_000;

export function LobbyPage() {
  // The first page is refreshed; the pages after it stay as loaded ("More rooms").
  const [rooms, setRooms] = useState<RoomSummary[] | null>(null);
  const [later, setLater] = useState<RoomSummary[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  const pagedOn = useRef(false);

  const refresh = useCallback(async () => {
    try {
      const page = await listRooms();
      setRooms(page.rooms);
      if (!pagedOn.current) setNext(page.next);
      setLoadError(null);
    } catch (e) {
      setLoadError(e instanceof Error ? e.message : String(e));
    }
  }, []);

  const loadMore = async () => {
    if (!next) return;
    setLoadingMore(true);
    try {
      const page = await listRooms(next);
      pagedOn.current = true;
      setLater((had) => [...had, ...page.rooms]);
      setNext(page.next);
      setLoadError(null);
    } catch (e) {
      setLoadError(e instanceof Error ? e.message : String(e));
    } finally {
      setLoadingMore(false);
    }
  };

  // A room active since its page was loaded shows once, where the newest copy puts it.
  const shown = rooms === null ? null : dedupe([...rooms, ...later]);

  useEffect(() => {
    void refresh();
    const timer = setInterval(() => void refresh(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [refresh]);

  return (
    <main className="page lobby">
      <header className="lobby-header">
        <h1>
          <span className="logo" aria-hidden="true">
            ◆
          </span>{" "}
          tomchat
        </h1>
        <p className="tagline">Rooms where people talk with Tom, together.</p>
        <Link href="/characters" className="small" data-testid="characters-link">
          Characters
        </Link>
        <ThemeToggle />
      </header>

      <UsernameField />

      <div className="lobby-grid">
        <section className="card">
          <h2>Rooms</h2>
          {loadError && <p className="error">Could not load the rooms: {loadError}</p>}
          {rooms === null && !loadError && <p className="muted">Loading…</p>}
          {shown?.length === 0 && <p className="muted">No rooms yet. Create the first one.</p>}
          {shown && shown.length > 0 && <RoomList rooms={shown} />}
          {next && (
            <button
              type="button"
              data-testid="more-rooms"
              disabled={loadingMore}
              onClick={() => void loadMore()}
            >
              {loadingMore ? "Loading…" : "More rooms"}
            </button>
          )}
        </section>

        <aside className="lobby-side">
          <MyRooms />
          <CreateRoom />
          <JoinByLink />
        </aside>
      </div>
    </main>
  );
}

function dedupe(rooms: RoomSummary[]): RoomSummary[] {
  const seen = new Set<string>();
  return rooms.filter((room) => {
    if (seen.has(room.id)) return false;
    seen.add(room.id);
    return true;
  });
}

function RoomList({ rooms }: { rooms: RoomSummary[] }) {
  // Most recently active first: that is where the conversation is.
  const sorted = [...rooms].sort((a, b) => (b.updatedAt ?? "").localeCompare(a.updatedAt ?? ""));
  return (
    <ul className="room-list" data-testid="room-list">
      {sorted.map((room) => {
        const online = Array.isArray(room.members) ? room.members.length : (room.members ?? 0);
        return (
          <li key={room.id} data-testid="room-item" data-room-id={room.id}>
            <Link href={roomPath(room.id)} className="room-link">
              <span className="room-name" dir="auto">
                {room.name || room.id}
              </span>
              <span className="room-meta">
                <span className={online > 0 ? "online" : "muted"} data-testid="room-members">
                  {online} online
                </span>
                {room.updatedAt && (
                  <span className="muted" title={room.updatedAt}>
                    active {timeAgo(room.updatedAt)}
                  </span>
                )}
              </span>
            </Link>
          </li>
        );
      })}
    </ul>
  );
}

function UsernameField() {
  const [name, setName] = useState(loadUsername);
  return (
    <label className="username-field">
      Your name
      <input
        data-testid="username-input"
        value={name}
        maxLength={MAX_USERNAME_CHARS}
        placeholder="How others see you"
        dir="auto"
        onChange={(e) => {
          setName(e.target.value);
          saveUsername(cleanUsername(e.target.value));
        }}
      />
    </label>
  );
}

function CreateRoom() {
  const [name, setName] = useState("");
  const [invitesOnly, setInvitesOnly] = useState(false);
  const [cast, setCast] = useState<string[]>([]);
  const [replyMode, setReplyMode] = useState<"single" | "all">("single");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) return;
    setBusy(true);
    setError(null);
    try {
      const room = await createRoom(trimmed, invitesOnly, cast, replyMode);
      // Both tokens are shown this once: kept in "My rooms", so the creator can come back
      // (and host) without the copied link.
      rememberRoom({
        id: room.id,
        name: room.name ?? trimmed,
        token: room.token ?? null,
        hostToken: room.hostToken ?? null,
      });
      // The invite token goes into the room's address, the invite link.
      navigate(roomPath(room.id, room.token));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <form className="card" onSubmit={submit} data-testid="create-room">
      <h2>New room</h2>
      <input
        data-testid="room-name-input"
        value={name}
        maxLength={100}
        placeholder="Room name"
        aria-label="Room name"
        dir="auto"
        onChange={(e) => setName(e.target.value)}
      />
      <label className="check">
        <input
          type="checkbox"
          data-testid="room-private"
          checked={invitesOnly}
          onChange={(e) => setInvitesOnly(e.target.checked)}
        />
        Private: only people with the link can join
      </label>
      <CastPicker
        value={cast}
        mode={replyMode}
        onChange={(ids, mode) => (setCast(ids), setReplyMode(mode))}
      />
      <button type="submit" className="primary" disabled={busy || !name.trim()}>
        {busy ? "Creating…" : "Create room"}
      </button>
      {error && <p className="error">{error}</p>}
    </form>
  );
}

function JoinByLink() {
  const [link, setLink] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const room = roomFromLink(link);
    if (!room) {
      setError("That is not a room link or room id.");
      return;
    }
    // Joining a room that does not exist would create it: a typo must not make a room.
    setChecking(true);
    try {
      if (!(await roomExists(room.roomId, room.token))) {
        setError(`There is no room "${room.roomId}" (or its link is missing its invite token).`);
        return;
      }
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      return;
    } finally {
      setChecking(false);
    }
    navigate(roomPath(room.roomId, room.token));
  };
  return (
    <form className="card" onSubmit={submit} data-testid="join-room">
      <h2>Join by link</h2>
      <input
        data-testid="room-link-input"
        value={link}
        placeholder="Paste a room link"
        aria-label="Room link"
        onChange={(e) => {
          setLink(e.target.value);
          setError(null);
        }}
      />
      <button type="submit" data-testid="join-link-submit" disabled={!link.trim() || checking}>
        Join
      </button>
      {error && (
        <p className="error" data-testid="join-link-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

/** Rooms this browser created or joined, private ones with their tokens: nobody is locked
 * out of their own room for want of the copied link. */
function MyRooms() {
  const [rooms, setRooms] = useState<MyRoom[]>(myRooms);
  if (rooms.length === 0) return null;
  return (
    <section className="card" data-testid="my-rooms">
      <h2>My rooms</h2>
      <ul className="room-list">
        {rooms.map((room) => (
          <li key={room.id} data-testid="my-room" data-room-id={room.id}>
            <Link href={roomPath(room.id, room.token)} className="room-link">
              <span className="room-name" dir="auto">
                {room.name || room.id}
              </span>
              <span className="room-meta">
                {room.token && <span className="tag">private</span>}
                {room.hostToken && <span className="tag">host</span>}
              </span>
            </Link>
            <button
              type="button"
              className="link small"
              aria-label={`Forget ${room.name || room.id}`}
              onClick={() => {
                forgetRoom(room.id);
                setRooms(myRooms());
              }}
            >
              Forget
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
