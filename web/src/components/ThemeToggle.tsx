import { useTheme } from "../lib/theme";

/** Dark theme on or off; the visible text is the accessible name, the state is aria-pressed. */
export function ThemeToggle() {
  const [theme, setTheme] = useTheme();
  const dark = theme === "dark";
  return (
    <button
      type="button"
      className="toggle small theme-toggle"
      data-testid="theme-toggle"
      aria-pressed={dark}
      onClick={() => setTheme(dark ? "light" : "dark")}
    >
      <span aria-hidden="true">{dark ? "☾" : "☀"}</span> Dark
    </button>
  );
}
