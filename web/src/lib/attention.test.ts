import { describe, expect, it } from "vitest";
import type { ChatMessage } from "../sync/events";
import { announcement, doneMap, newlyDone, tabTitle, unread } from "./attention";

const msg = (
  id: string,
  username: string,
  status: ChatMessage["status"] = "complete",
  isAI = false,
): ChatMessage => ({
  id,
  username,
  content: `text of ${id}`,
  timestamp: "2026-01-01T00:00:00Z",
  isAI,
  audioUrl: null,
  status,
  firstVersion: 1,
  source: "text",
  error: null,
});

describe("announcements", () => {
  it("names a reply once, when it is finished, and never the reader's own messages", () => {
    const start = [msg("a", "ann"), msg("r", "Tom", "streaming", true)];
    const before = doneMap(start);
    // Still streaming: nothing to say yet.
    expect(newlyDone(before, start, "ann")).toEqual([]);
    const later = [msg("a", "ann"), msg("r", "Tom", "complete", true), msg("b", "bob"), msg("c", "ann")];
    expect(newlyDone(before, later, "ann").map((m) => m.id)).toEqual(["r", "b"]);
    expect(newlyDone(doneMap(later), later, "ann")).toEqual([]);
    expect(announcement(later[1]!)).toBe("Tom: text of r");
    expect(announcement(msg("s", "Tom", "stopped", true))).toBe("Tom (stopped): text of s");
  });
});

describe("unread", () => {
  it("counts what others wrote since the tab was hidden", () => {
    const seen = new Set(["a"]);
    const now = [msg("a", "bob"), msg("b", "ann"), msg("c", "bob"), msg("r", "Tom", "streaming", true)];
    expect(unread(seen, now, "ann")).toEqual({ count: 2, firstId: "c" });
    expect(unread(new Set(now.map((m) => m.id)), now, "ann")).toEqual({ count: 0, firstId: null });
  });

  it("puts the count in the title", () => {
    expect(tabTitle("Book club", 3)).toBe("(3) Book club · tomchat");
    expect(tabTitle("Book club", 0)).toBe("Book club · tomchat");
  });
});
