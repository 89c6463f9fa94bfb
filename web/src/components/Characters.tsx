import { type FormEvent, useCallback, useEffect, useState } from "react";
import {
  archiveCharacter,
  type Character,
  type CharacterCard,
  listCharacters,
  saveCharacter,
  uploadCard,
} from "../api/characters";
import { Link } from "./Link";
import { ThemeToggle } from "./ThemeToggle";

/** The character library: who can be cast in a room. */
export function CharactersPage() {
  const [characters, setCharacters] = useState<Character[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<Character | "new" | null>(null);

  const refresh = useCallback(async () => {
    try {
      setCharacters(await listCharacters());
      setError(null);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, []);
  useEffect(() => void refresh(), [refresh]);

  return (
    <main className="page lobby" data-testid="characters-page">
      <header className="lobby-header">
        <h1>
          <Link href="/" className="back" aria-label="All rooms">
            ←
          </Link>{" "}
          Characters
        </h1>
        <p className="tagline">Who can answer in a room. Upload a Character Card or write one.</p>
        <ThemeToggle />
      </header>
      <div className="lobby-grid">
        <section className="card">
          <h2>Library</h2>
          {error && <p className="error">{error}</p>}
          {characters === null && !error && <p className="muted">Loading…</p>}
          <ul className="character-list" data-testid="character-list">
            {characters?.map((c) => (
              <li key={c.id} data-testid="character-item" data-character-id={c.id}>
                <img className="avatar" src={c.avatarUrl} alt="" width={40} height={40} />
                <div>
                  <strong>{c.name}</strong> <span className="muted small">rev. {c.revision}</span>
                  <p className="muted small">{c.description || c.greeting}</p>
                </div>
                <button type="button" className="link small" onClick={() => setEditing(c)}>
                  Edit
                </button>
                <button
                  type="button"
                  className="link small"
                  onClick={async () => {
                    await archiveCharacter(c.id);
                    await refresh();
                  }}
                >
                  Archive
                </button>
              </li>
            ))}
          </ul>
          <button type="button" onClick={() => setEditing("new")} data-testid="new-character">
            Write a character
          </button>
        </section>
        <aside className="lobby-side">
          <UploadCard onDone={refresh} />
          {editing && (
            <CharacterForm
              key={editing === "new" ? "new" : editing.id}
              character={editing === "new" ? null : editing}
              onDone={async () => {
                setEditing(null);
                await refresh();
              }}
            />
          )}
        </aside>
      </div>
    </main>
  );
}

function UploadCard({ onDone }: { onDone: () => Promise<void> }) {
  const [file, setFile] = useState<File | null>(null);
  const [avatar, setAvatar] = useState<File | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!file) return;
    setError(null);
    try {
      const made = await uploadCard(file, avatar);
      setDone(`${made.name} joined the library.`);
      await onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <form className="card" onSubmit={submit} data-testid="upload-card">
      <h2>Upload a card</h2>
      <label>
        Character Card (V2 or V3, .png or .json)
        <input
          type="file"
          accept=".png,.json,image/png,application/json"
          data-testid="card-file"
          onChange={(e) => setFile(e.target.files?.[0] ?? null)}
        />
      </label>
      <label>
        Picture (optional; a PNG card brings its own)
        <input type="file" accept="image/*" onChange={(e) => setAvatar(e.target.files?.[0] ?? null)} />
      </label>
      <button type="submit" className="primary" disabled={!file} data-testid="upload-submit">
        Upload
      </button>
      {error && (
        <p className="error" data-testid="upload-error">
          {error}
        </p>
      )}
      {done && <p className="ok">{done}</p>}
    </form>
  );
}

function CharacterForm({ character, onDone }: { character: Character | null; onDone: () => Promise<void> }) {
  const [card, setCard] = useState<CharacterCard>({
    name: character?.name ?? "",
    system_prompt: character?.systemPrompt ?? "",
    greeting: character?.greeting ?? "",
    description: character?.description ?? "",
    voice: character?.voice ?? "",
    example_dialogue: character?.exampleDialogue ?? "",
  });
  const [error, setError] = useState<string | null>(null);
  const field = (key: keyof CharacterCard, label: string, long = false) => (
    <label>
      {label}
      {long ? (
        <textarea
          value={card[key] ?? ""}
          rows={3}
          onChange={(e) => setCard({ ...card, [key]: e.target.value })}
        />
      ) : (
        <input value={card[key] ?? ""} onChange={(e) => setCard({ ...card, [key]: e.target.value })} />
      )}
    </label>
  );
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const body: CharacterCard = { ...card };
    if (!body.voice) delete body.voice;
    try {
      await saveCharacter(body, character?.id);
      await onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <form className="card" onSubmit={submit} data-testid="character-form">
      <h2>{character ? `Edit ${character.name}` : "New character"}</h2>
      {field("name", "Name")}
      {field("description", "Description", true)}
      {field("system_prompt", "System prompt", true)}
      {field("greeting", "Greeting", true)}
      {field("voice", "Voice (Fish Audio voice id)")}
      {field("example_dialogue", "Example dialogue", true)}
      <button type="submit" className="primary">
        Save
      </button>
      {error && <p className="error">{error}</p>}
    </form>
  );
}
