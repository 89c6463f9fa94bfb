import { memo, useDeferredValue } from "react";
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

interface Props {
  message: ChatMessage;
  mine: boolean;
  playing: boolean;
  onPlay: (message: ChatMessage) => void;
}

/**
 * One transcript entry. Text is rendered as Markdown (src/markdown): nothing a person or
 * the model wrote is ever parsed as HTML.
 */
export const MessageItem = memo(function MessageItem({ message, mine, playing, onPlay }: Props) {
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
      </div>
      <div className="bubble">
        <div className={`content ${streaming ? "streaming" : ""}`} data-testid="message-content" dir="auto">
          <Markdown
            text={text}
            after={streaming && <span className="cursor" data-testid="cursor" aria-hidden="true" />}
          />
        </div>
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
