import { type FormEvent, type KeyboardEvent, useEffect, useRef, useState } from "react";
import { canRecord, type Recording, startRecording } from "../audio/recorder";
import { mentionChoices } from "./Cast";
import { Icon } from "./Icon";

const MAX_CONTENT_CHARS = 4000; // domain/limits.py
/** Shorter than this is a slip of the finger, not a message. */
const MIN_RECORDING_MS = 400;

interface Props {
  disabled: boolean;
  onSend: (text: string) => void;
  onVoice: (bytes: ArrayBuffer, mimeType: string) => void;
  /** The reply being written, if any: shows the Stop button. */
  replyingId: string | null;
  /** A stop was asked for and not answered yet. */
  stopping: boolean;
  onStop: (messageId: string) => void;
  /** Put the cursor in the text box once this turns true (entering the room). */
  focusWhenReady?: boolean;
  /** The server transcribes voice messages: show the microphone. */
  voiceMessages?: boolean;
  /** The person started writing. */
  onTyping?: () => void;
  /** The cast's names, offered when a word starts with `@`. */
  mentionNames?: string[];
}

export function Composer({
  disabled,
  onSend,
  onVoice,
  replyingId,
  stopping,
  onStop,
  focusWhenReady = false,
  voiceMessages = false,
  onTyping,
  mentionNames = [],
}: Props) {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  const focused = useRef(false);

  // Entering a room is for talking: the cursor starts in the composer. Not on a touch
  // screen, where focus would throw the keyboard over the conversation.
  useEffect(() => {
    if (!focusWhenReady || focused.current) return;
    focused.current = true;
    if (!window.matchMedia?.("(pointer: coarse)").matches) input.current?.focus();
  }, [focusWhenReady]);

  const submit = (e?: FormEvent) => {
    e?.preventDefault();
    const content = text.trim();
    if (disabled || !content || content.length > MAX_CONTENT_CHARS) return;
    onSend(content);
    setText("");
    input.current?.focus();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends, Shift+Enter starts a new line (and IME composition is left alone).
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  const tooLong = text.length > MAX_CONTENT_CHARS;
  const choices = mentionChoices(text, mentionNames);
  const complete = (name: string) => {
    setText(text.replace(/@([^\s@]*)$/, `@${name} `));
    input.current?.focus();
  };
  return (
    <form className="composer" onSubmit={submit} data-testid="composer">
      {choices.length > 0 && (
        <div className="mentions" role="listbox" aria-label="Characters" data-testid="mentions">
          {choices.map((name) => (
            <button
              key={name}
              type="button"
              role="option"
              aria-selected="false"
              onClick={() => complete(name)}
            >
              @{name}
            </button>
          ))}
        </div>
      )}
      {replyingId && (
        <button
          type="button"
          className="stop"
          data-testid="stop-button"
          disabled={stopping}
          onClick={() => onStop(replyingId)}
        >
          <Icon name="stop" size={12} /> Stop Tom
        </button>
      )}
      <div className="composer-row">
        <textarea
          ref={input}
          data-testid="message-input"
          value={text}
          rows={1}
          placeholder="Say something to the room…"
          onChange={(e) => {
            setText(e.target.value);
            onTyping?.();
          }}
          onKeyDown={onKeyDown}
          aria-label="Message"
          dir="auto"
          enterKeyHint="send"
        />
        {voiceMessages && <HoldToRecord disabled={disabled} onVoice={onVoice} />}
        <button
          type="submit"
          className="primary"
          data-testid="send-button"
          disabled={disabled || !text.trim() || tooLong}
        >
          Send
        </button>
      </div>
      {tooLong && (
        <p className="error small">
          {text.length} / {MAX_CONTENT_CHARS} characters: that is too long for one message.
        </p>
      )}
    </form>
  );
}

type RecState =
  | { phase: "idle" }
  | { phase: "starting" }
  | { phase: "recording"; since: number }
  | { phase: "error"; message: string };

/** Press and hold (mouse, touch, or Space/Enter on the button) to record; release to send. */
function HoldToRecord({ disabled, onVoice }: { disabled: boolean; onVoice: Props["onVoice"] }) {
  const [state, setState] = useState<RecState>({ phase: "idle" });
  const recording = useRef<Recording | null>(null);
  // Released before the microphone even started: stop as soon as it does.
  const released = useRef(false);
  const [, tick] = useState(0);

  useEffect(() => {
    if (state.phase !== "recording") return;
    const timer = setInterval(() => tick((n) => n + 1), 200);
    return () => clearInterval(timer);
  }, [state.phase]);

  useEffect(() => () => recording.current?.cancel(), []);

  if (!canRecord()) return null;

  const press = async () => {
    if (disabled || recording.current || state.phase === "starting") return;
    released.current = false;
    setState({ phase: "starting" });
    try {
      recording.current = await startRecording();
      setState({ phase: "recording", since: Date.now() });
      if (released.current) void release();
    } catch (e) {
      recording.current = null;
      const denied = e instanceof DOMException && e.name === "NotAllowedError";
      setState({
        phase: "error",
        message: denied ? "Microphone access was refused." : "No microphone available.",
      });
    }
  };

  const release = async () => {
    released.current = true;
    const rec = recording.current;
    if (!rec) return;
    recording.current = null;
    setState({ phase: "idle" });
    const { blob, mimeType, durationMs } = await rec.stop();
    if (durationMs < MIN_RECORDING_MS || blob.size === 0) {
      setState({ phase: "error", message: "Hold the button while you speak." });
      return;
    }
    onVoice(await blob.arrayBuffer(), mimeType);
  };

  const seconds = state.phase === "recording" ? Math.floor((Date.now() - state.since) / 1000) : 0;
  const active = state.phase === "recording" || state.phase === "starting";
  return (
    <span className="record">
      <button
        type="button"
        className={`mic ${active ? "on" : ""}`}
        data-testid="record-button"
        data-recording={state.phase === "recording" ? "true" : "false"}
        disabled={disabled}
        aria-label="Hold to record a voice message"
        title="Hold to record a voice message"
        onPointerDown={(e) => {
          e.currentTarget.setPointerCapture?.(e.pointerId);
          void press();
        }}
        onPointerUp={() => void release()}
        onPointerCancel={() => void release()}
        onKeyDown={(e) => {
          if ((e.key === " " || e.key === "Enter") && !e.repeat) {
            e.preventDefault();
            void press();
          }
        }}
        onKeyUp={(e) => {
          if (e.key === " " || e.key === "Enter") void release();
        }}
        onContextMenu={(e) => e.preventDefault()}
      >
        {state.phase === "recording" ? `● ${seconds}s` : <Icon name="mic" size={18} />}
      </button>
      {state.phase === "error" && (
        <span className="error small record-error" role="alert">
          {state.message}
        </span>
      )}
    </span>
  );
}
