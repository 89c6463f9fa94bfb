import { type ChangeEvent, useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { RawEvent } from "../api/protocol";
import { useFeatures } from "../api/features";
import { ApiError, forkRoom, getRoom, mediaUrl } from "../api/rest";
import { voicePlayer } from "../audio/voice";
import { navigate, roomPath } from "../lib/router";
import { useStore } from "../lib/useStore";
import { ReplayController, type ReplayState } from "../replay/controller";
import { duration, ndjsonLines } from "../replay/timeline";
import { MAX_RATE, ReplayVoice } from "../replay/voice";
import "../replay/replay.css";
import type { ChatMessage } from "../sync/events";
import { AudioBlockedBanner } from "./AudioBlockedBanner";
import { Icon } from "./Icon";
import { Link } from "./Link";
import { ThemeToggle } from "./ThemeToggle";
import { Transcript } from "./Transcript";
import { VoiceControls } from "./VoiceControls";

const SPEEDS = [0.5, 1, 2, 4, 8];
const STEP_MS = 100;
const LABELS: Record<ReplayState, string> = {
  loading: "Loading…",
  playing: "Playing",
  paused: "Paused",
  reconnecting: "Reconnecting…",
  finished: "Finished",
  error: "Could not load this replay",
};

/** The speed to start at: `?speed=` in the address, so a fast replay can be linked to. */
function initialSpeed(): number {
  const asked = Number(new URLSearchParams(window.location.search).get("speed"));
  return Number.isFinite(asked) && asked > 0 && asked <= 1000 ? asked : 1;
}

/** The room's whole log, streamed as ndjson: the replay's time line. */
async function loadLog(roomId: string, token: string | null): Promise<RawEvent[]> {
  const headers: Record<string, string> = { Accept: "application/x-ndjson" };
  if (token) headers["X-Room-Token"] = token;
  const response = await fetch(`/api/rooms/${encodeURIComponent(roomId)}/events?after=0`, { headers });
  if (!response.ok || !response.body) {
    throw new ApiError(
      response.status,
      response.status === 404 ? "there is no such room" : response.statusText,
    );
  }
  const events: RawEvent[] = [];
  for await (const event of ndjsonLines<RawEvent>(response.body)) events.push(event);
  return events;
}

/**
 * Watch a room's conversation again with its original timing: play and pause, a speed
 * from 0.5× to 8×, a scrubber over the session's time line, and the replies' voices in
 * step with their text. The server paces the events (SSE); `ReplayController` follows it.
 */
export function ReplayPage({ roomId, token }: { roomId: string; token: string | null }) {
  const player = voicePlayer();
  const features = useFeatures();
  const muted = useStore(player.subscribe, player.getState);
  const voice = useMemo(() => new ReplayVoice(), []);
  const voiceState = useStore(voice.subscribe, voice.getState);
  const replay = useMemo(
    () =>
      new ReplayController(roomId, token, initialSpeed(), {
        open: (url) => new EventSource(url),
        voice,
        muted: () => player.getState().muted,
        mediaUrl: (url) => mediaUrl(url, token),
      }),
    [roomId, token, voice, player],
  );
  const status = useStore(replay.subscribe, replay.getState);
  const view = useStore(replay.sync.subscribe, replay.sync.getView);

  useEffect(() => {
    let gone = false;
    loadLog(roomId, token).then(
      (events) => gone || replay.ready(events),
      (error: unknown) => gone || replay.failed(error instanceof Error ? error.message : String(error)),
    );
    return () => {
      gone = true;
      replay.stop();
    };
  }, [roomId, token, replay, voice]);

  // The mute switch applies to the replay's voices at once.
  useEffect(() => replay.refreshVoice(), [muted.muted, replay]);

  // The scrubber moves between events too: redraw a few times a second while playing.
  const [, setTick] = useState(0);
  useEffect(() => {
    if (status.state !== "playing") return;
    const timer = setInterval(() => setTick((n) => n + 1), 250);
    return () => clearInterval(timer);
  }, [status.state]);
  // While the thumb is dragged it shows where it is; the seek happens when it is let go
  // (the DOM's `change`: pointer released, or an arrow key). Both are native listeners:
  // React's onChange also fires when React itself writes a value the range then rounds
  // to its step, which once left the thumb "dragged" for good and the clock frozen.
  const [dragging, setDragging] = useState<number | null>(null);
  const position = dragging ?? replay.position();
  const scrubber = useRef<HTMLInputElement>(null);
  useEffect(() => {
    const input = scrubber.current;
    if (!input) return;
    const move = () => setDragging(Number(input.value));
    const drop = () => {
      setDragging(null);
      replay.seek(Number(input.value));
    };
    input.addEventListener("input", move);
    input.addEventListener("change", drop);
    return () => {
      input.removeEventListener("input", move);
      input.removeEventListener("change", drop);
    };
  }, [replay]);

  const [name, setName] = useState(roomId);
  const [forking, setForking] = useState(false);
  const [forkError, setForkError] = useState<string | null>(null);
  useEffect(() => {
    getRoom(roomId, token).then(
      (room) => setName(room.name || roomId),
      () => {},
    );
  }, [roomId, token]);
  useEffect(() => {
    document.title = `${name} (replay) · tomchat`;
  }, [name]);

  // A message's own play button: "Stop" on the voice the replay is playing silences it;
  // "Play" on another one plays that instead of the replay's.
  const onPlay = useCallback(
    (m: ChatMessage) => {
      if (!m.audioUrl) return;
      const replaying = voice.getState().playing === m.id;
      voice.pause();
      if (!replaying) player.toggle(m.id, mediaUrl(m.audioUrl, token));
    },
    [player, voice, token],
  );

  const onSpeed = (e: ChangeEvent<HTMLSelectElement>) => {
    replay.setSpeed(Number(e.target.value));
    replay.refreshVoice();
  };
  const speeds = [...new Set([...SPEEDS, status.speed])].sort((a, b) => a - b);
  const playing = status.state === "playing" || status.state === "reconnecting";
  const ready = status.state !== "loading" && status.state !== "error";
  const span = Math.max(0, status.end - status.start);
  // A range only takes values on its steps: the top is rounded up so that the last
  // events (within a step of the end) can be reached.
  const top = status.start + Math.max(1, Math.ceil(span / STEP_MS)) * STEP_MS;

  return (
    <main
      className="room replay"
      data-testid="replay"
      data-state={status.state}
      data-version={status.version}
      data-voice-playing={voiceState.playing ?? ""}
      data-voice-rate={voiceState.rate}
    >
      <header className="room-header">
        <Link href={roomPath(roomId, token)} className="back" aria-label="Back to the room">
          ←
        </Link>
        <div className="room-title">
          <h1>{name}</h1>
          <span className="muted small">replay</span>
        </div>
        {features?.tts && <VoiceControls player={player} state={muted} />}
        <ThemeToggle />
        <span className={`badge conn ${playing ? "conn-live" : ""}`} data-testid="replay-state">
          <span className="dot" aria-hidden="true" />
          {LABELS[status.state]}
        </span>
      </header>

      <div className="replay-controls" data-testid="replay-controls">
        <button
          type="button"
          className="primary replay-play"
          data-testid="replay-play"
          disabled={!ready}
          aria-label={playing ? "Pause" : status.state === "finished" ? "Play again" : "Play"}
          onClick={() => replay.toggle()}
        >
          {playing ? <PauseIcon /> : <Icon name="play" />}
        </button>
        <span className="replay-time" data-testid="replay-time">
          {duration(position - status.start)} / {duration(span)}
        </span>
        <input
          type="range"
          className="replay-scrubber"
          data-testid="replay-scrubber"
          aria-label="Position in the session"
          min={status.start}
          max={top}
          step={STEP_MS}
          // On a step, as the range would round it anyway.
          value={
            status.start +
            Math.round((Math.min(Math.max(position, status.start), top) - status.start) / STEP_MS) * STEP_MS
          }
          disabled={!ready || span === 0}
          ref={scrubber}
          onChange={ignore}
        />
        <span className="replay-clock muted small" data-testid="replay-clock">
          {ready && span >= 0 ? clock(position) : ""}
        </span>
        <button
          type="button"
          className="small"
          data-testid="fork-here"
          disabled={!ready || status.version < 1 || forking}
          onClick={() => {
            setForking(true);
            setForkError(null);
            forkRoom(roomId, { at: status.version }, token).then(
              (room) => navigate(roomPath(room.id, room.token ?? null)),
              (e: unknown) => {
                setForking(false);
                setForkError(e instanceof Error ? e.message : String(e));
              },
            );
          }}
        >
          Fork from here
        </button>
        <label className="small">
          Speed{" "}
          <select value={status.speed} onChange={onSpeed} data-testid="replay-speed">
            {speeds.map((s) => (
              <option key={s} value={s}>
                {s}×
              </option>
            ))}
          </select>
        </label>
      </div>

      {voiceState.blocked && !muted.muted && <AudioBlockedBanner onUnblock={() => voice.unblock()} />}
      {status.speed > MAX_RATE && !muted.muted && (
        <div className="banner ok small" data-testid="voice-too-fast" role="status">
          Voices play up to {MAX_RATE}×: faster than that, only the text is replayed.
        </div>
      )}
      {forkError && (
        <div className="banner error" data-testid="fork-error">
          Could not fork: {forkError}
        </div>
      )}
      {status.error && (
        <div className="banner error" data-testid="replay-error">
          Could not load this replay: {status.error}. <Link href="/">Back to the rooms</Link>
        </div>
      )}

      <div className="room-body">
        <Transcript
          view={view}
          username=""
          playingId={voiceState.playing ?? muted.playing}
          onPlay={onPlay}
          empty={
            <p className="empty muted">
              {status.state === "loading" ? "Loading the session…" : "Nothing yet…"}
            </p>
          }
        />
      </div>
    </main>
  );
}

/** React wants an onChange on a controlled input; the native listeners above do the work. */
function ignore(): void {}

/** The session's wall clock at `ms`, in the reader's time zone. */
function clock(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function PauseIcon() {
  return (
    <svg className="icon" width={16} height={16} viewBox="0 0 24 24" fill="currentColor" aria-hidden="true">
      <path d="M6 5h4v14H6zM14 5h4v14h-4z" />
    </svg>
  );
}
