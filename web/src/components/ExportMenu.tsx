import { useEffect, useRef, useState } from "react";
import "../replay/replay.css";

const FORMATS = [
  { format: "markdown", label: "Markdown (.md)" },
  { format: "text", label: "Plain text (.txt)" },
  { format: "json", label: "JSON (.json)" },
  { format: "jsonl", label: "JSON Lines (.jsonl)" },
] as const;

/** The transcript href of one format (`GET /api/rooms/{id}/transcript`). */
export function transcriptUrl(roomId: string, format: string, token: string | null): string {
  const query = new URLSearchParams({ format });
  // A download link cannot carry a header: a private room's token goes in the query.
  if (token) query.set("token", token);
  return `/api/rooms/${encodeURIComponent(roomId)}/transcript?${query}`;
}

/**
 * The room's transcript as a file, in the four formats: plain links the browser downloads
 * (the server names the file), so a room of any size streams straight to disk.
 */
export function ExportMenu({ roomId, token }: { roomId: string; token: string | null }) {
  const [open, setOpen] = useState(false);
  const menu = useRef<HTMLDetailsElement>(null);
  // Like any menu: Esc (back to its button) and a click elsewhere close it.
  useEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape") return;
      setOpen(false);
      menu.current?.querySelector("summary")?.focus();
    };
    const onPointer = (e: PointerEvent) => {
      if (!menu.current?.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener("keydown", onKey);
    document.addEventListener("pointerdown", onPointer);
    return () => {
      document.removeEventListener("keydown", onKey);
      document.removeEventListener("pointerdown", onPointer);
    };
  }, [open]);
  return (
    <details
      className="export-menu small"
      data-testid="export-menu"
      ref={menu}
      open={open}
      onToggle={(e) => setOpen(e.currentTarget.open)}
    >
      <summary>Export</summary>
      <ul>
        {FORMATS.map(({ format, label }) => (
          <li key={format}>
            <a
              href={transcriptUrl(roomId, format, token)}
              download
              data-testid={`export-${format}`}
              // The download starts; the menu's work is done.
              onClick={() => setOpen(false)}
            >
              {label}
            </a>
          </li>
        ))}
      </ul>
    </details>
  );
}
