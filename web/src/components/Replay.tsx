import { useCallback, useEffect, useMemo, useState } from "react";
import type { RawEvent } from "../api/protocol";
import { voicePlayer } from "../audio/voice";
import { roomPath } from "../lib/router";
import { useStore } from "../lib/useStore";
import type { ChatMessage } from "../sync/events";
import { fromRaw } from "../sync/events";
import { RoomSync } from "../sync/roomState";
import { Link } from "./Link";
import { Transcript } from "./Transcript";

const SPEEDS = [1, 2, 4, 8];
type ReplayState = "playing" | "finished" | "error";

/**
 * Watch a room's conversation again at its original pace: the server paces the room's
 * log (Server-Sent Events, `GET /api/rooms/{id}/replay`) and the same sync module that
 * drives the live room builds the transcript from it.
 */
export function ReplayPage({ roomId }: { roomId: string }) {
  const [speed, setSpeed] = useState(1);
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
    const source = new EventSource(`/api/rooms/${encodeURIComponent(roomId)}/replay?${query}`);
    const onEvent = (e: MessageEvent<string>) => {
      const raw = parseEvent(e.data);
      if (raw) sync.receive(fromRaw(raw));
    };
    source.onmessage = onEvent;
    // The server may name its events by type; listen for those names as well.
    for (const type of ["room.created", "message.posted", "reply.started", "reply.chunk", "reply.audio", "reply.completed", "event"]) {
      source.addEventListener(type, onEvent as EventListener);
    }
    const finish = () => {
      setState("finished");
      source.close();
    };
    source.addEventListener("end", finish);
    source.addEventListener("done", finish);
    source.onerror = () => {
      // EventSource reconnects by itself and would replay from the start again: stop instead.
      source.close();
      setState((s) => (s === "playing" ? (sync.getView().version > 0 ? "finished" : "error") : s));
    };
    return () => source.close();
  }, [roomId, speed, sync]);

  const onPlay = useCallback((m: ChatMessage) => m.audioUrl && player.toggle(m.id, m.audioUrl), [player]);

  return (
    <div className="room replay" data-testid="replay" data-state={state}>
      <header className="room-header">
        <Link href={roomPath(roomId)} className="back" aria-label="Back to the room">
          ←
        </Link>
        <div className="room-title">
          <h1>{roomId}</h1>
          <span className="muted small">replay</span>
        </div>
        <label className="small">
          Speed{" "}
          <select value={speed} onChange={(e) => setSpeed(Number(e.target.value))}>
            {SPEEDS.map((s) => (
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
          {state === "playing" ? "Playing" : state === "finished" ? "Finished" : "Could not load"}
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
