/** The character library's REST calls (`/api/characters`). */
import { ApiError } from "./rest";

export interface Character {
  id: string;
  name: string;
  description: string;
  systemPrompt: string;
  greeting: string;
  voice: string | null;
  exampleDialogue: string;
  avatarUrl: string;
  hasAvatar: boolean;
  revision: number;
  archived: boolean;
}

/** What the create/edit form sends: tomchat's own card. */
export interface CharacterCard {
  name: string;
  system_prompt: string;
  greeting: string;
  description?: string;
  voice?: string;
  example_dialogue?: string;
}

async function answer<T>(response: Response): Promise<T> {
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = (await response.json()) as { detail?: string; title?: string };
      detail = problem.detail ?? problem.title ?? detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, detail || `HTTP ${response.status}`);
  }
  return response.status === 204 ? (undefined as T) : ((await response.json()) as T);
}

export async function listCharacters(): Promise<Character[]> {
  return answer(await fetch("/api/characters", { headers: { Accept: "application/json" } }));
}

export async function saveCharacter(card: CharacterCard, id?: string): Promise<Character> {
  const response = await fetch(id ? `/api/characters/${encodeURIComponent(id)}` : "/api/characters", {
    method: id ? "PUT" : "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(card),
  });
  return answer(response);
}

/** Upload a Character Card (V2/V3, `.json` or `.png`), with a picture of its own if given. */
export async function uploadCard(file: File, avatar?: File | null): Promise<Character> {
  const form = new FormData();
  form.append("file", file);
  if (avatar) form.append("avatar", avatar);
  return answer(await fetch("/api/characters", { method: "POST", body: form }));
}

export async function archiveCharacter(id: string): Promise<void> {
  return answer(await fetch(`/api/characters/${encodeURIComponent(id)}`, { method: "DELETE" }));
}
