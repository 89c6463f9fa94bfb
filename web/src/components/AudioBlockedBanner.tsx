import { Icon } from "./Icon";

/** Shown where the browser refused to auto-play Tom's voice: one click unblocks it. */
export function AudioBlockedBanner({ onUnblock }: { onUnblock: () => void }) {
  return (
    <div className="banner" data-testid="audio-blocked">
      Your browser blocked Tom's voice.{" "}
      <button type="button" className="primary" data-testid="unblock-audio" onClick={onUnblock}>
        <Icon name="speaker" /> Play sound
      </button>
    </div>
  );
}
