/**
 * "Alice is typing…": who in the room is writing, from the server's ephemeral `typing`
 * notices, and how often this person's own writing is told to the room.
 *
 * A notice says nothing about when the writing stops, so each name is shown for a while
 * after its last notice; the writer's client repeats the notice while they keep typing,
 * more often than a name expires, so a steady writer never flickers out.
 */

/** How long a name is shown after its last notice. */
export const TYPING_SHOWN_MS = 4_000;
/** How often, at most, this person's typing is told to the room (the server passes on no more). */
export const TYPING_NOTICE_MS = 2_000;

/** The names of the people typing, in the order they started. */
export class TypingPeople {
  /** username → when their name goes (ms, `Date.now()` time). */
  private readonly until = new Map<string, number>();
  private names: readonly string[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly shownMs = TYPING_SHOWN_MS) {}

  /** A notice from `username`: show them (again) for `shownMs`. */
  seen(username: string): void {
    this.until.set(username, Date.now() + this.shownMs);
    this.update();
  }

  /** `username`'s message arrived, or they left: they are not typing any more. */
  stopped(username: string): void {
    if (this.until.delete(username)) this.update();
  }

  /** Everyone not in `members` left the room: their names go at once. */
  keepOnly(members: readonly string[]): void {
    const present = new Set(members);
    let changed = false;
    for (const name of [...this.until.keys()]) {
      if (!present.has(name)) changed = this.until.delete(name) || changed;
    }
    if (changed) this.update();
  }

  /** The connection dropped: what was known is no longer. */
  clear(): void {
    if (this.until.size === 0) return;
    this.until.clear();
    this.update();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.until.clear();
    this.listeners.clear();
  }

  /** The same array until the names change (for useSyncExternalStore). */
  getNames = (): readonly string[] => this.names;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** Drop the expired names, wake up for the next to expire, tell the listeners. */
  private update(): void {
    const now = Date.now();
    for (const [name, until] of [...this.until]) if (until <= now) this.until.delete(name);
    const names = [...this.until.keys()];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.until.size > 0) {
      const next = Math.min(...this.until.values());
      this.timer = setTimeout(() => this.update(), Math.max(0, next - now));
    }
    if (names.length === this.names.length && names.every((n, i) => n === this.names[i])) return;
    this.names = names;
    for (const l of this.listeners) l();
  }
}

/** Calls `send` at most once per `intervalMs`, however often it is asked to. */
export class Throttle {
  private last = -Infinity;

  constructor(
    private readonly send: () => void,
    private readonly intervalMs = TYPING_NOTICE_MS,
  ) {}

  /** Send now unless the last send was less than `intervalMs` ago; true if it sent. */
  poke(): boolean {
    const now = Date.now();
    if (now - this.last < this.intervalMs) return false;
    this.last = now;
    this.send();
    return true;
  }

  /** The next poke sends at once (the message went: the next words are news again). */
  reset(): void {
    this.last = -Infinity;
  }
}

/** The line to show: names first (each kept whole, for right-to-left names), then the rest. */
export function typingLine(names: readonly string[]): { names: string[]; rest: string } | null {
  if (names.length === 0) return null;
  if (names.length === 1) return { names: [names[0]!], rest: " is typing…" };
  if (names.length === 2) return { names: [names[0]!, names[1]!], rest: " are typing…" };
  return { names: [], rest: "Several people are typing…" };
}

/** The line as plain text. */
export function typingText(names: readonly string[]): string {
  const line = typingLine(names);
  return line ? `${line.names.join(" and ")}${line.rest}` : "";
}
