import type { ConnectionState } from "../live/connection";

type BadgeState = ConnectionState | "failed";

const LABELS: Record<BadgeState, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  // The join was refused: the banner under the header says why.
  failed: "Not joined",
};

export function ConnectionBadge({ state }: { state: BadgeState }) {
  return (
    <span className={`badge conn conn-${state}`} data-testid="connection" data-state={state} role="status">
      <span className="dot" aria-hidden="true" />
      {LABELS[state]}
    </span>
  );
}
