import type { ConnectionState } from "../live/connection";

const LABELS: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
};

export function ConnectionBadge({ state }: { state: ConnectionState }) {
  return (
    <span className={`badge conn conn-${state}`} data-testid="connection" data-state={state} role="status">
      <span className="dot" aria-hidden="true" />
      {LABELS[state]}
    </span>
  );
}
