import type { PlayerState, VoicePlayer } from "../audio/player";
import { Icon } from "./Icon";

/**
 * The mute toggle for Tom's auto-played voice. Its visible text is its name (for speech
 * control and screen readers alike); whether it is on is `aria-pressed`.
 */
export function VoiceControls({ player, state }: { player: VoicePlayer; state: PlayerState }) {
  return (
    <button
      type="button"
      className={`toggle ${state.muted ? "" : "on"}`}
      data-testid="mute-toggle"
      aria-pressed={state.muted}
      title={state.muted ? "Tom's voice is muted" : "Tom's voice plays by itself"}
      onClick={() => player.setMuted(!state.muted)}
    >
      <Icon name={state.muted ? "muted" : "speaker"} />
      <span className="label"> Mute</span>
    </button>
  );
}
