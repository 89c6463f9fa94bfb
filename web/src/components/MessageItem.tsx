import { memo, useDeferredValue, useState } from "react";
import type { PlayerState } from "../audio/player";
import type { OutgoingMessage } from "../live/connection";
import { personStyle } from "../lib/identity";
import { clockTime, fullTime } from "../lib/time";
import { Markdown } from "../markdown/Markdown";
import type { ChatMessage } from "../sync/events";
import { useAvatar } from "./Cast";
import { Icon } from "./Icon";

const STATUS_LABELS: Partial<Record<ChatMessage["status"], string>> = {
  streaming: "writing…",
  stopped: "stopped",
  failed: "failed",
  interrupted: "interrupted",
  truncated: "cut short",
  filtered: "filtered",
};

/** What the tree lets a reader do with a message (absent on the replay page). */
export interface TreeActions {
  choose: (messageId: string) => void;
  regenerate: (messageId: string) => void;
  edit: (messageId: string, content: string) => void;
  remove: (messageId: string) => void;
  fork: (message: ChatMessage) => void;
  /** The host may delete anyone's message (the people feature says who is host). */
  host: boolean;
}

/** The alternatives of the slot this message shows, for ‹ 2/3 ›. */
export interface Alternatives {
  ids: readonly string[];
  index: number;
  /** The room's latest reply, with nothing streaming: it may be regenerated. */
  regenerable: boolean;
}

interface Props {
  message: ChatMessage;
  mine: boolean;
  playing: boolean;
  onPlay: (message: ChatMessage) => void;
  tree?: TreeActions;
  alternatives?: Alternatives;
}

/**
 * One transcript entry. Text is rendered as Markdown (src/markdown): nothing a person or
 * the model wrote is ever parsed as HTML.
 */
export const MessageItem = memo(function MessageItem({
  message,
  mine,
  playing,
  onPlay,
  tree,
  alternatives,
}: Props) {
  const [editing, setEditing] = useState<string | null>(null);
  const streaming = message.status === "streaming";
  const label = STATUS_LABELS[message.status];
  const kind = message.isAI ? "ai" : mine ? "mine" : "other";
  // While a reply streams, parsing may lag a chunk behind rather than hold up typing;
  // once it is done, the final text shows at once.
  const deferred = useDeferredValue(message.content);
  const text = streaming ? deferred : message.content;
  const avatar = useAvatar(message.isAI ? message.username : "");
  return (
    <li
      className={`message ${kind} status-${message.status}`}
      data-testid="message"
      data-message-id={message.id}
      data-status={message.status}
      data-streaming={streaming ? "true" : "false"}
      data-ai={message.isAI ? "true" : "false"}
      data-edited={message.edited ? "true" : "false"}
      data-deleted={message.deleted ? "true" : "false"}
    >
      <div className="meta">
        {message.isAI && avatar && (
          <img
            className="avatar small"
            data-testid="message-avatar"
            src={avatar}
            alt=""
            width={24}
            height={24}
          />
        )}
        <bdi
          className={message.isAI ? "author" : "author person"}
          style={message.isAI ? undefined : personStyle(message.username)}
        >
          {message.username || (message.isAI ? "Tom" : "?")}
        </bdi>
        {message.source === "voice" && <span className="tag">voice</span>}
        <time dateTime={message.timestamp} title={fullTime(message.timestamp)}>
          {clockTime(message.timestamp)}
        </time>
        {label && (
          <span className={`status status-${message.status}`} data-testid="message-status">
            {label}
          </span>
        )}
        {message.edited && !message.deleted && (
          <span className="tag" data-testid="edited-mark">
            edited
          </span>
        )}
        {alternatives && alternatives.ids.length > 1 && tree && (
          <span className="alternatives" data-testid="alternatives">
            <button
              type="button"
              className="link"
              aria-label="Previous alternative"
              data-testid="alternative-prev"
              disabled={alternatives.index === 0}
              onClick={() => tree.choose(alternatives.ids[alternatives.index - 1]!)}
            >
              ‹
            </button>
            <span data-testid="alternative-position">
              {alternatives.index + 1}/{alternatives.ids.length}
            </span>
            <button
              type="button"
              className="link"
              aria-label="Next alternative"
              data-testid="alternative-next"
              disabled={alternatives.index === alternatives.ids.length - 1}
              onClick={() => tree.choose(alternatives.ids[alternatives.index + 1]!)}
            >
              ›
            </button>
          </span>
        )}
        {tree && !message.deleted && !streaming && (
          <span className="message-actions">
            {alternatives?.regenerable && (
              <button
                type="button"
                className="link small"
                data-testid="regenerate"
                onClick={() => tree.regenerate(message.id)}
              >
                Regenerate
              </button>
            )}
            {mine && (
              <button
                type="button"
                className="link small"
                data-testid="edit-message"
                onClick={() => setEditing(message.content)}
              >
                Edit
              </button>
            )}
            {(mine || tree.host) && (
              <button
                type="button"
                className="link small"
                data-testid="delete-message"
                onClick={() => {
                  if (window.confirm("Delete this message for everyone? Its words are gone for good.")) {
                    tree.remove(message.id);
                  }
                }}
              >
                Delete
              </button>
            )}
            <button
              type="button"
              className="link small"
              data-testid="fork-message"
              onClick={() => tree.fork(message)}
            >
              Fork from this message
            </button>
          </span>
        )}
      </div>
      <div className="bubble">
        {message.deleted ? (
          <p className="content muted" data-testid="message-content">
            <em data-testid="deleted-mark">deleted</em>
          </p>
        ) : editing !== null && tree ? (
          <form
            className="edit"
            data-testid="edit-form"
            onSubmit={(e) => {
              e.preventDefault();
              if (editing.trim()) tree.edit(message.id, editing);
              setEditing(null);
            }}
          >
            <textarea
              data-testid="edit-input"
              value={editing}
              onChange={(e) => setEditing(e.target.value)}
              dir="auto"
              autoFocus
            />
            <button type="submit" className="primary small" data-testid="edit-save">
              Save
            </button>{" "}
            <button type="button" className="link small" onClick={() => setEditing(null)}>
              Cancel
            </button>
          </form>
        ) : (
          <div className={`content ${streaming ? "streaming" : ""}`} data-testid="message-content" dir="auto">
            <Markdown
              text={text}
              after={streaming && <span className="cursor" data-testid="cursor" aria-hidden="true" />}
            />
          </div>
        )}
        {message.error && message.status === "failed" && <p className="error small">{message.error}</p>}
        {message.voiceError && (
          <p className="muted small" data-testid="voice-unavailable" title={message.voiceError}>
            {message.audioUrl ? "voice cut short" : "voice unavailable"}
          </p>
        )}
        {message.audioUrl && (
          <button
            type="button"
            className={`play ${playing ? "on" : ""}`}
            data-testid="play-audio"
            aria-label={playing ? "Stop audio" : message.isAI ? "Play Tom's voice" : "Play the recording"}
            onClick={() => onPlay(message)}
          >
            <Icon name={playing ? "stop" : "play"} size={12} />{" "}
            {playing ? "Stop" : message.isAI ? "Play" : "Play recording"}
          </button>
        )}
      </div>
    </li>
  );
});

/** Refusals that the same message sent again would get again: no Retry for them. */
const PERMANENT = new Set(["bad_request", "too_large"]);

interface OutgoingProps {
  item: OutgoingMessage;
  username: string;
  onRetry: (clientId: string) => void;
  onDiscard: (clientId: string) => void;
}

/** A message of ours the server has not shown to the room yet. */
export function OutgoingItem({ item, username, onRetry, onDiscard }: OutgoingProps) {
  const text =
    item.kind === "voice" && !item.content
      ? item.state === "sending"
        ? "Transcribing your voice…"
        : "Voice message"
      : item.content;
  return (
    <li
      className={`message mine outgoing ${item.state}`}
      data-testid="outgoing"
      data-client-id={item.clientId}
      data-status={item.state}
    >
      <div className="meta">
        <bdi className="author">{username}</bdi>
        <span className={`status status-${item.state}`}>
          {item.state === "sending" ? "sending…" : item.state === "waiting" ? "waiting…" : "not sent"}
        </span>
      </div>
      <div className="bubble">
        <p className="content plain" dir="auto">
          {text}
        </p>
        {item.state === "failed" && (
          <p className="error small">
            {item.error}{" "}
            {!PERMANENT.has(item.errorCode ?? "") && (
              <>
                <button type="button" className="link" onClick={() => onRetry(item.clientId)}>
                  Retry
                </button>{" "}
              </>
            )}
            <button type="button" className="link" onClick={() => onDiscard(item.clientId)}>
              Discard
            </button>
          </p>
        )}
      </div>
    </li>
  );
}

export function isPlaying(player: PlayerState, message: ChatMessage): boolean {
  return player.playing === message.id;
}
