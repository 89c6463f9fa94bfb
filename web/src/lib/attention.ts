/**
 * What a reader should hear or see about messages that arrived: the finished ones a
 * screen reader announces, and those that came while the tab was in the background.
 * Pure functions over the transcript; the hooks in components/ hold the state.
 */
import type { ChatMessage } from "../sync/events";

/** A message is done when nothing more will be added to its text. */
const done = (m: ChatMessage) => m.status !== "streaming";

/**
 * The messages that became done since `before` (id → whether it was done), leaving out
 * the reader's own (they know what they said). Returns them in transcript order.
 */
export function newlyDone(
  before: ReadonlyMap<string, boolean>,
  messages: readonly ChatMessage[],
  username: string,
): ChatMessage[] {
  return messages.filter((m) => done(m) && before.get(m.id) !== true && (m.isAI || m.username !== username));
}

export function doneMap(messages: readonly ChatMessage[]): Map<string, boolean> {
  return new Map(messages.map((m) => [m.id, done(m)]));
}

/** The words a screen reader says for a message. */
export function announcement(m: ChatMessage): string {
  const who = m.username || (m.isAI ? "Tom" : "Someone");
  const how = m.status === "complete" ? "" : ` (${m.status})`;
  return `${who}${how}: ${m.content}`;
}

/** What arrived that the reader has not seen: the messages not in `seen` but their own. */
export function unread(
  seen: ReadonlySet<string>,
  messages: readonly ChatMessage[],
  username: string,
): { count: number; firstId: string | null } {
  const fresh = messages.filter((m) => !seen.has(m.id) && (m.isAI || m.username !== username));
  return { count: fresh.length, firstId: fresh[0]?.id ?? null };
}

/** The tab's title: the number of unread messages in front, as chat apps do. */
export function tabTitle(title: string, unreadCount: number): string {
  return `${unreadCount > 0 ? `(${unreadCount}) ` : ""}${title} · tomchat`;
}
