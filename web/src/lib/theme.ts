/**
 * Light or dark: the system's choice (`prefers-color-scheme`) unless the person picked one
 * with the toggle, which this browser remembers. The choice is an attribute on <html>
 * that styles.css reads.
 */
import { useEffect, useState } from "react";

export type Theme = "light" | "dark";
const KEY = "tomchat.theme";

export function storedTheme(): Theme | null {
  try {
    const value = localStorage.getItem(KEY);
    return value === "light" || value === "dark" ? value : null;
  } catch {
    return null;
  }
}

function systemTheme(): Theme {
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function applyTheme(theme: Theme | null): void {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

/** The theme in effect and a way to pick the other one (remembered). */
export function useTheme(): [Theme, (theme: Theme) => void] {
  const [theme, setTheme] = useState<Theme>(() => storedTheme() ?? systemTheme());
  useEffect(() => {
    if (storedTheme()) return;
    // No choice of its own: follow the system as it changes.
    const query = window.matchMedia?.("(prefers-color-scheme: dark)");
    const follow = () => setTheme(query.matches ? "dark" : "light");
    query?.addEventListener("change", follow);
    return () => query?.removeEventListener("change", follow);
  }, []);
  const choose = (next: Theme) => {
    try {
      localStorage.setItem(KEY, next);
    } catch {
      /* private mode: it lasts for this page */
    }
    applyTheme(next);
    setTheme(next);
  };
  return [theme, choose];
}
