import { describe, expect, it } from "vitest";
import { VoicePlayer } from "./player";

/** Just enough of an <audio> element; `refuse` makes play() fail as a blocked autoplay does. */
class FakeAudio extends EventTarget {
  src = "";
  preload = "";
  paused = true;
  refuse = false;
  played: string[] = [];
  play(): Promise<void> {
    if (this.refuse) return Promise.reject(new DOMException("no gesture yet", "NotAllowedError"));
    this.paused = false;
    this.played.push(this.src);
    return Promise.resolve();
  }
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.dispatchEvent(new Event("pause"));
  }
  removeAttribute(): void {}
}

function setup() {
  const audio = new FakeAudio();
  const player = new VoicePlayer(() => audio as unknown as HTMLAudioElement);
  return { audio, player };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

describe("voice player", () => {
  it("auto-plays a reply's voice as it arrives", async () => {
    const { audio, player } = setup();
    player.autoplay("r1", "/media/r1.mp3");
    await flush();
    expect(audio.played).toEqual(["/media/r1.mp3"]);
    expect(player.getState().playing).toBe("r1");
  });

  it("does not auto-play when muted, but the play button still works", async () => {
    const { audio, player } = setup();
    player.setMuted(true);
    player.autoplay("r1", "/media/r1.mp3");
    await flush();
    expect(audio.played).toEqual([]);
    player.toggle("r1", "/media/r1.mp3");
    await flush();
    expect(audio.played).toEqual(["/media/r1.mp3"]);
  });

  it("reports a blocked auto-play and plays it on the unblocking click", async () => {
    const { audio, player } = setup();
    audio.refuse = true;
    player.autoplay("r1", "/media/r1.mp3");
    await flush();
    expect(player.getState()).toMatchObject({ blocked: true, playing: null });

    audio.refuse = false; // the click is the gesture the browser wanted
    player.unblock();
    await flush();
    expect(audio.played).toEqual(["/media/r1.mp3"]);
    expect(player.getState().blocked).toBe(false);
    expect(player.getState().notice).toMatch(/sound is on/i);
  });

  it("stops what plays when the same button is pressed again", async () => {
    const { audio, player } = setup();
    player.toggle("r1", "/media/r1.mp3");
    await flush();
    player.toggle("r1", "/media/r1.mp3");
    expect(audio.paused).toBe(true);
    expect(player.getState().playing).toBeNull();
  });
});
