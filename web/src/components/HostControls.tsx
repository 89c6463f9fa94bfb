import { type FormEvent, useEffect, useState } from "react";
import { rotateInvite } from "../api/rest";
import type { RoomConnection } from "../live/connection";
import { myRoom, rememberRoom } from "../lib/identity";
import { navigate, roomPath } from "../lib/router";

/** What the room's host may do: rename, lock (no new names), a new invite link. Removing a
 * person is a button beside their name in the member list. */
export function HostControls({
  connection,
  name,
  locked,
  isPrivate,
}: {
  connection: RoomConnection;
  name: string;
  locked: boolean;
  isPrivate: boolean;
}) {
  const [draft, setDraft] = useState(name);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  useEffect(() => setDraft(name), [name]);
  const act = async (what: () => Promise<unknown>) => {
    setError(null);
    setNotice(null);
    try {
      await what();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const rename = (e: FormEvent) => {
    e.preventDefault();
    const clean = draft.trim();
    if (clean && clean !== name) void act(() => connection.rename(clean));
  };
  const hostToken = myRoom(connection.roomId)?.hostToken ?? null;
  const rotate = () =>
    act(async () => {
      if (!hostToken) throw new Error("only the browser that created the room holds its host token");
      const { token } = await rotateInvite(connection.roomId, hostToken);
      rememberRoom({ id: connection.roomId, token });
      setNotice("New invite link made: the old one no longer works.");
      navigate(roomPath(connection.roomId, token));
    });
  return (
    <details className="host-controls" data-testid="host-controls">
      <summary>Host</summary>
      <form onSubmit={rename} className="host-rename">
        <input
          aria-label="Room name"
          data-testid="rename-input"
          value={draft}
          maxLength={100}
          dir="auto"
          onChange={(e) => setDraft(e.target.value)}
        />
        <button type="submit" className="small" data-testid="rename-submit">
          Rename
        </button>
      </form>
      <label className="check">
        <input
          type="checkbox"
          data-testid="lock-room"
          checked={locked}
          onChange={(e) => void act(() => connection.setLocked(e.target.checked))}
        />
        Locked: no new names may join
      </label>
      {isPrivate && hostToken && (
        <button type="button" className="small" data-testid="rotate-invite" onClick={() => void rotate()}>
          New invite link
        </button>
      )}
      {notice && <p className="small ok">{notice}</p>}
      {error && <p className="error small">{error}</p>}
    </details>
  );
}

/** The countdown of a rate-limited outbox, live. */
export function HoldNotice({ until }: { until: number | null }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (until === null) return;
    const timer = setInterval(() => setNow(Date.now()), 200);
    return () => clearInterval(timer);
  }, [until]);
  if (until === null) return null;
  const left = Math.max(0, (until - now) / 1000);
  return (
    <p className="small muted hold-notice" role="status" data-testid="outbox-hold">
      Sending too fast: the next message goes in {left.toFixed(1)} s.
    </p>
  );
}
