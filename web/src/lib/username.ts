/** The name a person chats under, remembered in this browser. */
const KEY = "tomchat.username";
export const MAX_USERNAME_CHARS = 32; // the server's limit (domain/limits.py)

export function loadUsername(): string {
  try {
    return localStorage.getItem(KEY) ?? "";
  } catch {
    return ""; // storage disabled: just ask again next time
  }
}

export function saveUsername(name: string): void {
  try {
    localStorage.setItem(KEY, name);
  } catch {
    /* storage disabled */
  }
}

export function cleanUsername(raw: string): string {
  return raw.trim().replace(/\s+/g, " ").slice(0, MAX_USERNAME_CHARS);
}
