import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { useFeatures } from "../api/features";
import { forkRoom, getRoom, mediaUrl, olderMessages } from "../api/rest";
import { voicePlayer } from "../audio/voice";
import { RoomConnection } from "../live/connection";
import { navigate, replayPath, roomPath } from "../lib/router";
import { cleanUsername, loadUsername, MAX_USERNAME_CHARS, saveUsername } from "../lib/username";
import { tabTitle } from "../lib/attention";
import { useAnnouncer, useMissed } from "../lib/useAttention";
import { useStore } from "../lib/useStore";
import type { ChatMessage } from "../sync/events";
import { Composer } from "./Composer";
import { ConnectionBadge } from "./ConnectionBadge";
import { AudioBlockedBanner } from "./AudioBlockedBanner";
import type { CastMember } from "../api/protocol";
import { CastBar, showCast } from "./Cast";
import { ExportMenu } from "./ExportMenu";
import { HoldNotice, HostControls } from "./HostControls";
import { personStyle, rememberRoom } from "../lib/identity";
import { Link } from "./Link";
import { OutgoingItem, type TreeActions } from "./MessageItem";
import { ThemeToggle } from "./ThemeToggle";
import { Transcript } from "./Transcript";
import { TypingIndicator } from "./TypingIndicator";
import { VoiceControls } from "./VoiceControls";

interface RoomProps {
  roomId: string;
  /** A private room's invite token, from the link. */
  token: string | null;
}

export function RoomPage({ roomId, token }: RoomProps) {
  const [username, setUsername] = useState(() => cleanUsername(loadUsername()));
  if (!username) return <UsernameGate roomId={roomId} token={token} onDone={setUsername} />;
  return (
    <RoomSession
      key={`${username}\n${token}`}
      roomId={roomId}
      token={token}
      username={username}
      onChangeName={(name) => {
        saveUsername(name);
        setUsername(name);
      }}
    />
  );
}

/** Asked once per browser: the name is remembered for every room after. */
function UsernameGate({ roomId, token, onDone }: RoomProps & { onDone: (name: string) => void }) {
  const [name, setName] = useState("");
  // The room's own name where it has one (a room not created yet has only its id).
  const [roomName, setRoomName] = useState(roomId);
  useEffect(() => {
    getRoom(roomId, token).then(
      (r) => r.name && setRoomName(r.name),
      () => {},
    );
  }, [roomId, token]);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const clean = cleanUsername(name);
    if (!clean) return;
    saveUsername(clean);
    onDone(clean);
  };
  return (
    <main className="page narrow">
      <form className="card" onSubmit={submit} data-testid="username-gate">
        <h1 data-testid="gate-room-name">Join “{roomName}”</h1>
        <label>
          Your name
          <input
            autoFocus
            data-testid="username-input"
            value={name}
            maxLength={MAX_USERNAME_CHARS}
            onChange={(e) => setName(e.target.value)}
            placeholder="How others see you"
            dir="auto"
          />
        </label>
        <button
          type="submit"
          className="primary"
          data-testid="username-submit"
          disabled={!cleanUsername(name)}
        >
          Enter the room
        </button>
      </form>
    </main>
  );
}

function RoomSession({
  roomId,
  token,
  username,
  onChangeName,
}: RoomProps & { username: string; onChangeName: (name: string) => void }) {
  const [connection, setConnection] = useState<RoomConnection | null>(null);

  // The connection lives exactly as long as this component is on screen.
  useEffect(() => {
    const c = new RoomConnection(roomId, username, { token: token ?? undefined });
    const player = voicePlayer();
    const stopAudio = c.sync.onAudio((id, url) => player.autoplay(id, mediaUrl(url, token)));
    c.start();
    setConnection(c);
    return () => {
      stopAudio();
      c.stop();
    };
  }, [roomId, token, username]);

  if (!connection) return null;
  return <RoomScreen connection={connection} token={token} username={username} onChangeName={onChangeName} />;
}

interface ScreenProps {
  connection: RoomConnection;
  token: string | null;
  username: string;
  onChangeName: (name: string) => void;
}

function RoomScreen({ connection, token, username: chosen, onChangeName }: ScreenProps) {
  const { roomId, sync } = connection;
  const view = useStore(sync.subscribe, sync.getView);
  const status = useStore(connection.subscribe, connection.getStatus);
  // The name as the room knows it (the server keeps the form it was first bound in).
  const username = status.you?.username ?? chosen;
  const host = status.you?.role === "host";
  const player = voicePlayer();
  const audio = useStore(player.subscribe, player.getState);
  const [stopError, setStopError] = useState<string | null>(null);
  const [stopping, setStopping] = useState<string | null>(null);
  const features = useFeatures();
  const [membersOpen, setMembersOpen] = useState(false);
  const announced = useAnnouncer(view.messages, view.joined, username);
  const missed = useMissed(view.messages, username);

  const loadOlder = useCallback(async () => {
    const before = sync.olderCursor();
    if (before === null) return;
    const epoch = sync.getView().epoch;
    const page = await olderMessages(roomId, before, token);
    sync.prependOlder(epoch, page.messages, page.nextBefore);
  }, [roomId, sync, token]);

  const onPlay = useCallback(
    (m: ChatMessage) => m.audioUrl && player.toggle(m.id, mediaUrl(m.audioUrl, token)),
    [player, token],
  );

  // The tree: what fails is said in one line above the composer; what works reaches
  // everyone (this reader too) as live events.
  const [treeError, setTreeError] = useState<string | null>(null);
  const tree = useMemo<TreeActions>(() => {
    const attempt = (work: Promise<unknown>) => {
      setTreeError(null);
      work.catch((e: unknown) => setTreeError(e instanceof Error ? e.message : String(e)));
    };
    return {
      choose: (id) => attempt(connection.chooseAlternative(id)),
      regenerate: (id) => attempt(connection.regenerate(id)),
      edit: (id, content) => attempt(connection.editMessage(id, content)),
      remove: (id) => attempt(connection.deleteMessage(id)),
      fork: (m) =>
        attempt(
          forkRoom(connection.roomId, { messageId: m.id }, token).then((room) =>
            navigate(roomPath(room.id, room.token ?? null)),
          ),
        ),
      host: false,
    };
  }, [connection, token]);

  const replying = [...view.messages].reverse().find((m) => m.status === "streaming") ?? null;
  const stop = async (messageId: string) => {
    setStopError(null);
    setStopping(messageId);
    try {
      await connection.stopGeneration(messageId);
    } catch (e) {
      setStopError(e instanceof Error ? e.message : String(e));
    } finally {
      setStopping(null);
    }
  };

  // Joining creates the room, so its name can be asked for once we are in.
  const [room, setRoom] = useState<{ name: string; private: boolean } | null>(null);
  useEffect(() => {
    if (!view.joined || room !== null) return;
    getRoom(roomId, token).then(
      (r) => setRoom({ name: r.name || roomId, private: Boolean(r.private) }),
      () => setRoom({ name: roomId, private: false }),
    );
  }, [view.joined, room, roomId, token]);
  const title = status.roomName ?? room?.name ?? roomId;
  // "My rooms": every room this browser got into, private ones with their token.
  useEffect(() => {
    if (view.joined && room !== null) rememberRoom({ id: roomId, name: title, token });
  }, [view.joined, room, roomId, title, token]);
  // The room's cast: from the room at first, then as `roomChanged` says.
  const [cast, setCast] = useState<{ members: CastMember[]; mode: "single" | "all" } | null>(null);
  useEffect(() => {
    if (!view.joined) return;
    getRoom(roomId, token).then(
      (r) => setCast({ members: r.cast ?? [], mode: r.replyMode === "all" ? "all" : "single" }),
      () => {},
    );
    return connection.onRoomChanged((p) => {
      setCast((old) => ({
        members: Array.isArray(p.cast) ? (p.cast as CastMember[]) : (old?.members ?? []),
        mode: p.replyMode === "all" ? "all" : p.replyMode === "single" ? "single" : (old?.mode ?? "single"),
      }));
    });
  }, [view.joined, roomId, token, connection]);
  useEffect(() => showCast(cast?.members ?? []), [cast]);
  useEffect(() => {
    document.title = tabTitle(title, missed.unreadCount);
  }, [title, missed.unreadCount]);

  // The drawer of people on a phone closes with Esc, like every overlay.
  useEffect(() => {
    if (!membersOpen) return;
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && setMembersOpen(false);
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [membersOpen]);

  return (
    <main className="room" data-testid="room" data-room-id={roomId} data-voice-playing={audio.playing ?? ""}>
      <header className="room-header">
        <Link href="/" className="back" aria-label="All rooms">
          ←
        </Link>
        <div className="room-title">
          <h1 data-testid="room-name">{title}</h1>
          {room?.private && (
            <span className="tag" data-testid="room-private" title="Only people with the link can join">
              private
            </span>
          )}
          <CopyLink roomId={roomId} token={token} />
          <Link href={replayPath(roomId, token)} className="small">
            Replay
          </Link>
          <ExportMenu roomId={roomId} token={token} />
          {status.locked && (
            <span className="tag" data-testid="room-locked" title="No new names may join">
              locked
            </span>
          )}
          {host && (
            <HostControls
              connection={connection}
              name={title}
              locked={status.locked}
              isPrivate={Boolean(room?.private)}
            />
          )}
          {cast && (
            <CastBar
              cast={cast.members}
              replyMode={cast.mode}
              onChange={(ids, mode) => connection.setCast(ids, mode)}
            />
          )}
        </div>
        {features?.tts && <VoiceControls player={player} state={audio} />}
        <ThemeToggle />
        <button
          type="button"
          className="members-toggle small"
          data-testid="members-toggle"
          aria-expanded={membersOpen}
          aria-controls="members"
          onClick={() => setMembersOpen(!membersOpen)}
        >
          People · {status.members.length}
        </button>
        <ConnectionBadge state={status.fatal ? "failed" : status.state} />
      </header>

      {audio.blocked && <AudioBlockedBanner onUnblock={() => player.unblock()} />}
      {audio.notice && (
        <div className="banner ok" data-testid="audio-notice" role="status">
          {audio.notice}
        </div>
      )}
      {status.fatal && status.fatalCode === "name_taken" && (
        <NameTaken message={status.fatal} onChoose={onChangeName} />
      )}
      {status.fatal && status.fatalCode !== "name_taken" && (
        <div className="banner error" data-testid="room-error" role="alert">
          <span>Could not join this room: {status.fatal}.</span>
          <button
            type="button"
            className="link"
            data-testid="retry-join"
            onClick={() => connection.retryJoin()}
          >
            Try again
          </button>
          <Link href="/">Back to the rooms</Link>
        </div>
      )}
      {/* Finished messages, read out by screen readers (not every chunk of a reply). */}
      <div className="sr-only" aria-live="polite" data-testid="announcer">
        {announced}
      </div>

      <div className="room-body">
        <Transcript
          view={view}
          username={username}
          playingId={audio.playing}
          onPlay={onPlay}
          loadOlder={loadOlder}
          sentCount={status.sent}
          dividerBefore={missed.dividerBefore}
          tree={tree}
          empty={<p className="empty muted">Nobody has said anything yet. Say hello to Tom!</p>}
          footer={status.outbox.map((item) => (
            <OutgoingItem
              key={item.clientId}
              item={item}
              username={username}
              onRetry={(id) => connection.retry(id)}
              onDiscard={(id) => connection.discard(id)}
            />
          ))}
        />
        {/* While reconnecting the list is what it was when the connection dropped: dim it. */}
        <aside
          id="members"
          aria-label="People in the room"
          className={`members ${status.state === "live" ? "" : "stale"} ${membersOpen ? "open" : ""}`}
          data-testid="members"
        >
          <div className="members-head">
            <h2>Online · {status.members.length}</h2>
            <button type="button" className="link small members-close" onClick={() => setMembersOpen(false)}>
              Close
            </button>
          </div>
          <ul>
            {status.members.map((name) => (
              <li
                key={name}
                data-testid="member"
                data-host={status.hosts.includes(name) || undefined}
                className={name === username ? "me" : ""}
              >
                <bdi className="person" style={personStyle(name)}>
                  {name}
                </bdi>
                {name === username && <span className="muted"> (you)</span>}
                {status.hosts.includes(name) && (
                  <span className="tag" data-testid="host-mark" title="Runs this room">
                    host
                  </span>
                )}
                {host && name !== username && (
                  <button
                    type="button"
                    className="link small"
                    data-testid="kick"
                    aria-label={`Remove ${name} from the room`}
                    onClick={() => {
                      if (window.confirm(`Remove ${name} from this room? They cannot come back.`))
                        void connection.kick(name).catch((e: unknown) => setStopError(String(e)));
                    }}
                  >
                    Remove
                  </button>
                )}
              </li>
            ))}
          </ul>
        </aside>
      </div>

      {membersOpen && <div className="scrim" aria-hidden="true" onClick={() => setMembersOpen(false)} />}

      <TypingIndicator typing={connection.typing} />

      {stopError && <p className="error small composer-error">Could not stop Tom: {stopError}</p>}
      <HoldNotice until={status.holdUntil} />
      {treeError && (
        <p className="error small composer-error" data-testid="tree-error" role="alert">
          {treeError}
        </p>
      )}
      <Composer
        disabled={!view.joined || status.fatal !== null}
        focusWhenReady={view.joined}
        voiceMessages={features?.asr ?? false}
        onTyping={() => {
          missed.clearDivider();
          connection.notifyTyping();
        }}
        mentionNames={cast?.members.map((m) => m.name) ?? []}
        onSend={(text) => connection.sendMessage(text)}
        onVoice={(bytes, mimeType) => connection.sendVoice(bytes, mimeType)}
        replyingId={replying?.id ?? null}
        stopping={stopping !== null && stopping === replying?.id}
        onStop={stop}
      />
    </main>
  );
}

function CopyLink({ roomId, token }: RoomProps) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    const url = `${window.location.origin}${roomPath(roomId, token)}`;
    try {
      await navigator.clipboard.writeText(url);
      setCopied(true);
      setTimeout(() => setCopied(false), 2000);
    } catch {
      window.prompt("Copy this link to invite someone:", url);
    }
  };
  return (
    <button type="button" className="link small" onClick={copy} data-testid="copy-link">
      {copied ? "Link copied" : "Invite link"}
    </button>
  );
}

/** The name is someone else's in this room (or a character's): offer to take another. */
function NameTaken({ message, onChoose }: { message: string; onChoose: (name: string) => void }) {
  const [name, setName] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const clean = cleanUsername(name);
    if (clean) onChoose(clean);
  };
  return (
    <form className="banner error" data-testid="name-taken" role="alert" onSubmit={submit}>
      <span>{message[0]?.toUpperCase() + message.slice(1)}.</span>
      <input
        data-testid="other-name-input"
        aria-label="Another name"
        value={name}
        maxLength={MAX_USERNAME_CHARS}
        placeholder="Another name"
        dir="auto"
        onChange={(e) => setName(e.target.value)}
      />
      <button
        type="submit"
        className="primary small"
        data-testid="other-name-submit"
        disabled={!cleanUsername(name)}
      >
        Use this name
      </button>
    </form>
  );
}
