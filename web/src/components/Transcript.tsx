import { Fragment, type ReactNode, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { ChatMessage } from "../sync/events";
import type { RoomView } from "../sync/roomState";
import { alternativesOf, slotOf } from "../sync/roomState";
import { type Alternatives, MessageItem, type TreeActions } from "./MessageItem";

/** How close to the bottom (px) still counts as "following the conversation". */
const STICKY_PX = 80;
/** How close to the top (px) starts loading older messages. */
const LOAD_OLDER_PX = 120;

interface Props {
  view: RoomView;
  username: string;
  playingId: string | null;
  onPlay: (message: ChatMessage) => void;
  /** Fetch the next older page; absent where there is nothing to page (replay). */
  loadOlder?: () => Promise<void>;
  /** Rendered after the transcript (messages on their way out). */
  footer?: ReactNode;
  /** Grows when the reader sends something: they want to see it, so follow the bottom. */
  sentCount?: number;
  empty?: ReactNode;
  /** The first message that came while the reader was away: a "New messages" line before it. */
  dividerBefore?: string | null;
  /** Regenerate, choose, edit, delete, fork (the live room; not the replay). */
  tree?: TreeActions;
}

/** Each slot shows one alternative: the rest of the log's replies stay out of sight. */
function shownWithAlternatives(
  messages: readonly ChatMessage[],
): Array<[ChatMessage, Alternatives | undefined]> {
  const streaming = messages.some((m) => m.status === "streaming");
  const latestAI = [...messages].reverse().find((m) => m.isAI);
  const latestSlot = latestAI ? slotOf(latestAI) : null;
  const out: Array<[ChatMessage, Alternatives | undefined]> = [];
  for (const m of messages) {
    if (m.chosen === false) continue;
    if (!m.isAI) {
      out.push([m, undefined]);
      continue;
    }
    const slot = slotOf(m);
    const ids = alternativesOf(messages, slot).map((a) => a.id);
    const regenerable = slot === latestSlot && !streaming && !m.deleted;
    out.push([m, { ids, index: Math.max(0, ids.indexOf(m.id)), regenerable }]);
  }
  return out;
}

/**
 * The scrolling transcript. It follows new text while the reader is at the bottom,
 * leaves them alone when they have scrolled up to read, and keeps their place when
 * older messages are put in front.
 */
export function Transcript({
  view,
  username,
  playingId,
  onPlay,
  loadOlder,
  footer,
  empty,
  sentCount = 0,
  dividerBefore = null,
  tree,
}: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const sticky = useRef(true);
  const [loading, setLoading] = useState(false);
  const [olderError, setOlderError] = useState<string | null>(null);
  // What the top of the list was before the last render, to keep the reader's place.
  const anchor = useRef<{ firstId: string | undefined; height: number }>({ firstId: undefined, height: 0 });
  // Something new arrived below while the reader was scrolled up.
  const [unseen, setUnseen] = useState(false);

  const fetchOlder = useCallback(async () => {
    if (!loadOlder || loading || !view.hasMore) return;
    setLoading(true);
    setOlderError(null);
    try {
      await loadOlder();
    } catch (e) {
      setOlderError(e instanceof Error ? e.message : String(e));
    } finally {
      setLoading(false);
    }
  }, [loadOlder, loading, view.hasMore]);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const firstId = view.messages[0]?.id;
    const before = anchor.current;
    if (before.firstId !== undefined && firstId !== before.firstId && !sticky.current) {
      // Older messages went in above: move down by what they added, so nothing jumps.
      el.scrollTop += el.scrollHeight - before.height;
    } else if (sticky.current) {
      el.scrollTop = el.scrollHeight;
    } else if (firstId === before.firstId && el.scrollHeight > before.height && !unseen) {
      setUnseen(true);
    }
    anchor.current = { firstId, height: el.scrollHeight };
  });

  // Sending takes the reader back down to the conversation (before the layout effect runs).
  const lastSent = useRef(sentCount);
  if (sentCount > lastSent.current) {
    sticky.current = true;
    if (unseen) setUnseen(false);
  }
  lastSent.current = sentCount;

  // If the first page does not fill the screen there is no scrolling to trigger paging.
  useEffect(() => {
    const el = scroller.current;
    if (el && !loading && !olderError && view.hasMore && el.scrollHeight <= el.clientHeight + LOAD_OLDER_PX) {
      void fetchOlder();
    }
  }, [view.hasMore, view.messages.length, loading, olderError, fetchOlder]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    sticky.current = el.scrollHeight - el.scrollTop - el.clientHeight < STICKY_PX;
    if (sticky.current && unseen) setUnseen(false);
    if (el.scrollTop < LOAD_OLDER_PX) void fetchOlder();
  };

  const jumpDown = () => {
    const el = scroller.current;
    if (el) el.scrollTo({ top: el.scrollHeight, behavior: "smooth" });
    sticky.current = true;
    setUnseen(false);
  };

  return (
    <div className="transcript-wrap">
      <div className="transcript" ref={scroller} onScroll={onScroll} data-testid="transcript">
        {view.hasMore && loadOlder && (
          <div className="older" data-testid="older">
            {olderError ? (
              <button type="button" className="link" onClick={() => void fetchOlder()}>
                Could not load older messages ({olderError}). Try again
              </button>
            ) : loading ? (
              "Loading older messages…"
            ) : (
              <button type="button" className="link" onClick={() => void fetchOlder()}>
                Load older messages
              </button>
            )}
          </div>
        )}
        {view.joined && !view.hasMore && view.messages.length > 0 && loadOlder && (
          <div className="older muted" data-testid="beginning">
            This is the beginning of the room.
          </div>
        )}
        {view.joined && view.messages.length === 0 && !footer && empty}
        <ol className="messages" data-testid="messages">
          {shownWithAlternatives(view.messages).map(([m, alternatives]) => (
            <Fragment key={m.id}>
              {m.id === dividerBefore && (
                <li className="new-divider" data-testid="new-divider">
                  <span>New messages</span>
                </li>
              )}
              <MessageItem
                message={m}
                mine={!m.isAI && m.username === username}
                playing={playingId === m.id}
                onPlay={onPlay}
                tree={tree}
                alternatives={tree ? alternatives : undefined}
              />
            </Fragment>
          ))}
          {footer}
        </ol>
      </div>
      {unseen && (
        <button type="button" className="jump primary" data-testid="jump-to-new" onClick={jumpDown}>
          New messages ↓
        </button>
      )}
    </div>
  );
}
