import { type FormEvent, useEffect, useState, useSyncExternalStore } from "react";
import { type Character, listCharacters } from "../api/characters";
import type { CastMember } from "../api/protocol";

// The cast of the room on screen (one room at a time), for the messages to show each
// character's picture.
let shown: CastMember[] = [];
const castListeners = new Set<() => void>();

/** Show this cast's pictures on the messages; returns the undo (leaving the room). */
export function showCast(cast: CastMember[]): () => void {
  shown = cast;
  castListeners.forEach((l) => l());
  return () => {
    if (shown === cast) showCast([]);
  };
}

/** A character's picture by the name its replies carry (names are unique in a cast). */
export function useAvatar(name: string): string | null {
  const cast = useSyncExternalStore(
    (l) => (castListeners.add(l), () => void castListeners.delete(l)),
    () => shown,
  );
  const found = name ? cast.find((m) => m.name.toLowerCase() === name.toLowerCase()) : undefined;
  return found?.avatarUrl ?? null;
}

/** The cast in the room's header, and (for the host) the form to change it. */
export function CastBar({
  cast,
  replyMode,
  onChange,
}: {
  cast: CastMember[];
  replyMode: "single" | "all";
  onChange: (ids: string[], mode: "single" | "all") => Promise<void>;
}) {
  const [open, setOpen] = useState(false);
  return (
    <div className="cast-bar" data-testid="cast">
      {cast.map((m) => (
        <span key={m.id} className="cast-member" data-testid="cast-member" data-character-id={m.id}>
          <img className="avatar small" src={m.avatarUrl} alt="" width={24} height={24} />
          <bdi>{m.name}</bdi>
        </span>
      ))}
      {replyMode === "all" && <span className="tag">all answer</span>}
      <button type="button" className="link small" data-testid="change-cast" onClick={() => setOpen(!open)}>
        Cast…
      </button>
      {open && (
        <CastForm
          initial={cast.map((m) => m.id)}
          initialMode={replyMode}
          submitLabel="Change the cast"
          onSubmit={async (ids, mode) => {
            await onChange(ids, mode);
            setOpen(false);
          }}
        />
      )}
    </div>
  );
}

/** Pick 1–8 characters from the library and the reply mode. */
export function CastPicker({
  value,
  mode,
  onChange,
}: {
  value: string[];
  mode: "single" | "all";
  onChange: (ids: string[], mode: "single" | "all") => void;
}) {
  const [library, setLibrary] = useState<Character[]>([]);
  useEffect(() => {
    listCharacters().then(setLibrary, () => setLibrary([]));
  }, []);
  const toggle = (id: string) =>
    onChange(value.includes(id) ? value.filter((v) => v !== id) : [...value, id].slice(0, 8), mode);
  return (
    <fieldset className="cast-picker" data-testid="cast-picker">
      <legend>Cast</legend>
      {library.map((c) => (
        <label key={c.id} className="check">
          <input
            type="checkbox"
            data-testid="cast-option"
            data-character-id={c.id}
            checked={value.includes(c.id)}
            onChange={() => toggle(c.id)}
          />
          <img className="avatar small" src={c.avatarUrl} alt="" width={20} height={20} /> {c.name}
        </label>
      ))}
      <label>
        Who answers
        <select
          data-testid="reply-mode"
          value={mode}
          onChange={(e) => onChange(value, e.target.value === "all" ? "all" : "single")}
        >
          <option value="single">The one named, else the last to speak</option>
          <option value="all">Everyone, in cast order</option>
        </select>
      </label>
    </fieldset>
  );
}

function CastForm({
  initial,
  initialMode,
  submitLabel,
  onSubmit,
}: {
  initial: string[];
  initialMode: "single" | "all";
  submitLabel: string;
  onSubmit: (ids: string[], mode: "single" | "all") => Promise<void>;
}) {
  const [ids, setIds] = useState(initial);
  const [mode, setMode] = useState(initialMode);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await onSubmit(ids, mode);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <form className="card cast-form" onSubmit={submit}>
      <CastPicker value={ids} mode={mode} onChange={(v, m) => (setIds(v), setMode(m))} />
      <button type="submit" className="primary" disabled={ids.length === 0} data-testid="cast-submit">
        {submitLabel}
      </button>
      {error && <p className="error small">{error}</p>}
    </form>
  );
}

/** The cast names that complete the `@word` being typed at the end of ``text``. */
export function mentionChoices(text: string, names: string[]): string[] {
  const match = /(?:^|\s)@([^\s@]*)$/.exec(text);
  if (!match) return [];
  const typed = (match[1] ?? "").toLowerCase();
  return names.filter((n) => n.toLowerCase().startsWith(typed));
}
