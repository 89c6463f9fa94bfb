import { VoicePlayer } from "./player";

let player: VoicePlayer | null = null;

/** One player for the whole page: only one voice should ever speak at a time. */
export function voicePlayer(): VoicePlayer {
  player ??= new VoicePlayer();
  return player;
}
