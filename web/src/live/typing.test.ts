import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Throttle, TYPING_SHOWN_MS, TypingPeople, typingLine, typingText } from "./typing";

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date("2026-01-01T12:00:00Z"));
});
afterEach(() => vi.useRealTimers());

describe("TypingPeople", () => {
  it("shows a name for four seconds after its last notice", () => {
    const people = new TypingPeople();
    const changes: (readonly string[])[] = [];
    people.subscribe(() => changes.push(people.getNames()));

    people.seen("Alice");
    expect(people.getNames()).toEqual(["Alice"]);
    vi.advanceTimersByTime(3_000);
    // Another notice before the name went: it stays, four seconds from now.
    people.seen("Alice");
    vi.advanceTimersByTime(3_999);
    expect(people.getNames()).toEqual(["Alice"]);
    vi.advanceTimersByTime(1);
    expect(people.getNames()).toEqual([]);
    // Listeners hear of changes only, not of every notice.
    expect(changes).toEqual([["Alice"], []]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("expires each name on its own, keeping the order they started in", () => {
    const people = new TypingPeople();
    people.seen("Alice");
    vi.advanceTimersByTime(1_000);
    people.seen("Bob");
    people.seen("Alice");
    expect(people.getNames()).toEqual(["Alice", "Bob"]);
    vi.advanceTimersByTime(TYPING_SHOWN_MS - 500);
    expect(people.getNames()).toEqual(["Alice", "Bob"]);
    people.seen("Alice");
    vi.advanceTimersByTime(500);
    expect(people.getNames()).toEqual(["Alice"]);
    vi.advanceTimersByTime(TYPING_SHOWN_MS);
    expect(people.getNames()).toEqual([]);
  });

  it("drops a name at once when their message arrives or they leave", () => {
    const people = new TypingPeople();
    people.seen("Alice");
    people.seen("Bob");
    people.seen("Cleo");
    const before = people.getNames();
    people.stopped("Dan"); // not typing: nothing changes, not even the array
    expect(people.getNames()).toBe(before);
    people.stopped("Bob");
    expect(people.getNames()).toEqual(["Alice", "Cleo"]);
    people.keepOnly(["Cleo", "Dan"]);
    expect(people.getNames()).toEqual(["Cleo"]);
    people.clear();
    expect(people.getNames()).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stops its timer when disposed", () => {
    const people = new TypingPeople();
    const listener = vi.fn();
    people.subscribe(listener);
    people.seen("Alice");
    people.dispose();
    vi.advanceTimersByTime(10_000);
    expect(listener).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("Throttle", () => {
  it("sends at most once per two seconds while typing, and at once after a reset", () => {
    const send = vi.fn();
    const throttle = new Throttle(send);
    const sentAt: number[] = [];
    // A keystroke every 150 ms for five seconds.
    for (let t = 0; t <= 5_000; t += 150) {
      if (throttle.poke()) sentAt.push(t);
      vi.advanceTimersByTime(150);
    }
    expect(sentAt).toEqual([0, 2_100, 4_200]);
    expect(send).toHaveBeenCalledTimes(3);
    throttle.reset();
    expect(throttle.poke()).toBe(true);
    expect(throttle.poke()).toBe(false);
  });
});

describe("the line", () => {
  it("names one or two people, and counts no further", () => {
    expect(typingText([])).toBe("");
    expect(typingText(["Alice"])).toBe("Alice is typing…");
    expect(typingText(["Alice", "Bob"])).toBe("Alice and Bob are typing…");
    expect(typingText(["Alice", "Bob", "Cleo"])).toBe("Several people are typing…");
    expect(typingLine(["نور"])).toEqual({ names: ["نور"], rest: " is typing…" });
    expect(typingLine([])).toBeNull();
  });
});
