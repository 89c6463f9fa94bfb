import { useCallback, useEffect, useMemo, useState } from "react";
import type { RawEvent } from "../api/protocol";
import { getRoom, mediaUrl } from "../api/rest";
import { voicePlayer } from "../audio/voice";
import { roomPath } from "../lib/router";
import { useStore } from "../lib/useStore";
import type { ChatMessage } from "../sync/events";
import { fromRaw } from "../sync/events";
import { RoomSync } from "../sync/roomState";
import { Link } from "./Link";
import { Transcript } from "./Transcript";

const SPEEDS = [1, 2, 4, 8, 16];
const REPLAY_LABELS: Record<ReplayState, string> = {
  playing: "Playing",
  reconnecting: "Reconnecting…",
  finished: "Finished",
  error: "Could not load this replay",
};
type ReplayState = "playing" | "reconnecting" | "finished" | "error";

/** The speed to start at: `?speed=` in the address, so a fast replay can be linked to. */
function initialSpeed(): number {
  const asked = Number(new URLSearchParams(window.location.search).get("speed"));
  return Number.isFinite(asked) && asked > 0 && asked <= 1000 ? asked : 1;
}

/**
 * Watch a room's conversation again at its original pace: the server paces the room's
 * log (Server-Sent Events, `GET /api/rooms/{id}/replay`) and the same sync module that
 * drives the live room builds the transcript from it.
 */
export function ReplayPage({ roomId, token }: { roomId: string; token: string | null }) {
  const [speed, setSpeed] = useState(initialSpeed);
  const [run, setRun] = useState(0);
  const [state, setState] = useState<ReplayState>("playing");
  // A fresh transcript for every run; there is nothing to resync from in a replay.
  const sync = useMemo(() => {
    const s = new RoomSync(roomId, { requestResync: () => {} });
    s.applyAck({ ok: true, roomId, version: 0, messages: [], streaming: [], hasMore: false });
    return s;
    // `run` restarts the replay from the beginning.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [roomId, speed, run]);
  const view = useStore(sync.subscribe, sync.getView);
  const player = voicePlayer();
  const audio = useStore(player.subscribe, player.getState);

  useEffect(() => {
    setState("playing");
    const query = new URLSearchParams({ speed: String(speed), maxPause: "3" });
    // EventSource cannot send headers: a private room's token goes in the query.
    if (token) query.set("token", token);
    const source = new EventSource(`/api/rooms/${encodeURIComponent(roomId)}/replay?${query}`);
    const onEvent = (e: MessageEvent<string>) => {
      const raw = parseEvent(e.data);
      if (raw) sync.receive(fromRaw(raw));
    };
    source.onmessage = (e: MessageEvent<string>) => {
      setState("playing");
      onEvent(e);
    };
    // After `end` EventSource would reconnect and start over: close it.
    source.addEventListener("end", () => {
      setState("finished");
      source.close();
    });
    source.onerror = () => {
      // A dropped connection is retried by EventSource itself, resuming after the last
      // event it got (Last-Event-ID); only a refusal closes it for good.
      setState(source.readyState === EventSource.CLOSED ? "error" : "reconnecting");
    };
    return () => source.close();
  }, [roomId, speed, sync, token]);

  const [name, setName] = useState(roomId);
  useEffect(() => {
    getRoom(roomId, token).then(
      (room) => setName(room.name || roomId),
      () => {},
    );
  }, [roomId, token]);
  useEffect(() => {
    document.title = `${name} (replay) · tomchat`;
  }, [name]);

  const onPlay = useCallback(
    (m: ChatMessage) => m.audioUrl && player.toggle(m.id, mediaUrl(m.audioUrl, token)),
    [player, token],
  );

  return (
    <div className="room replay" data-testid="replay" data-state={state}>
      <header className="room-header">
        <Link href={roomPath(roomId, token)} className="back" aria-label="Back to the room">
          ←
        </Link>
        <div className="room-title">
          <h1>{name}</h1>
          <span className="muted small">replay</span>
        </div>
        <label className="small">
          Speed{" "}
          <select value={speed} onChange={(e) => setSpeed(Number(e.target.value))}>
            {[...new Set([...SPEEDS, speed])]
              .sort((a, b) => a - b)
              .map((s) => (
                <option key={s} value={s}>
                  {s}×
                </option>
              ))}
          </select>
        </label>
        <button type="button" onClick={() => setRun((n) => n + 1)}>
          ↺ Restart
        </button>
        <span className={`badge conn ${state === "playing" ? "conn-live" : ""}`} data-testid="replay-state">
          {REPLAY_LABELS[state]}
        </span>
      </header>
      <div className="room-body">
        <Transcript
          view={view}
          username=""
          playingId={audio.playing}
          onPlay={onPlay}
          empty={<p className="empty muted">Waiting for the first event…</p>}
        />
      </div>
    </div>
  );
}

function parseEvent(data: string): RawEvent | null {
  try {
    const value = JSON.parse(data) as Partial<RawEvent> & { recorded_at?: string };
    if (typeof value.version !== "number" || typeof value.type !== "string") return null;
    return {
      version: value.version,
      type: value.type,
      data: value.data ?? {},
      recordedAt: value.recordedAt ?? value.recorded_at ?? new Date().toISOString(),
    };
  } catch {
    return null;
  }
}
