import { useEffect, useRef, useState } from "react";
import type { ChatMessage } from "../sync/events";
import { announcement, doneMap, newlyDone, unread } from "./attention";

/**
 * The text of the polite live region: each message that is finished (not every chunk),
 * from the moment the room was joined on. What was there at the join is not read out.
 */
export function useAnnouncer(messages: readonly ChatMessage[], joined: boolean, username: string): string {
  const before = useRef<Map<string, boolean> | null>(null);
  const [text, setText] = useState("");
  useEffect(() => {
    if (!joined) return;
    if (before.current !== null) {
      const finished = newlyDone(before.current, messages, username);
      if (finished.length > 0) setText(finished.map(announcement).join("\n"));
    }
    before.current = doneMap(messages);
  }, [messages, joined, username]);
  return text;
}

/**
 * What the reader missed while the tab was in the background: how many messages (for the
 * title) and, once they are back, the first of them (where the "New messages" line goes).
 */
export function useMissed(messages: readonly ChatMessage[], username: string) {
  const seen = useRef<Set<string> | null>(null);
  const latest = useRef(messages);
  latest.current = messages;
  const [dividerBefore, setDividerBefore] = useState<string | null>(null);
  const [hidden, setHidden] = useState(() => document.hidden);

  useEffect(() => {
    const onChange = () => {
      if (document.hidden) {
        seen.current = new Set(latest.current.map((m) => m.id));
      } else if (seen.current) {
        setDividerBefore(unread(seen.current, latest.current, username).firstId);
        seen.current = null;
      }
      setHidden(document.hidden);
    };
    if (document.hidden) seen.current = new Set(latest.current.map((m) => m.id));
    document.addEventListener("visibilitychange", onChange);
    return () => document.removeEventListener("visibilitychange", onChange);
  }, [username]);

  const count = hidden && seen.current ? unread(seen.current, messages, username).count : 0;
  return { unreadCount: count, dividerBefore, clearDivider: () => setDividerBefore(null) };
}
