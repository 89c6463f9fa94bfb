/**
 * The replies' voices during a replay, in step with their text: a voice starts when its
 * `reply.audio` event is replayed (or part-way in, after a seek), plays at the replay's
 * speed, and pauses, resumes and stops with the replay.
 *
 * The live room's `VoicePlayer` cannot seek or change pace, so the replay has its own
 * <audio> element; it follows the same mute switch.
 */

export interface ReplayVoiceState {
  /** The message whose voice is sounding. */
  playing: string | null;
  /** The browser refused to start sound before a click; `unblock()` tries again. */
  blocked: boolean;
  rate: number;
}

/**
 * Browsers play pitch-corrected sound between these rates and mute or refuse it beyond:
 * a replay faster than MAX_RATE plays no voices, since none could keep step with the text.
 */
export const MIN_RATE = 0.5;
export const MAX_RATE = 4;

export class ReplayVoice {
  private readonly audio: HTMLAudioElement;
  private state: ReplayVoiceState = { playing: null, blocked: false, rate: 1 };
  private readonly listeners = new Set<() => void>();
  private wanted: { id: string; url: string; offset: number } | null = null;
  /** Bumped by every start/stop, so a play() that settles late cannot undo a newer one. */
  private attempt = 0;

  constructor(createAudio: () => HTMLAudioElement = () => new Audio()) {
    this.audio = createAudio();
    this.audio.preload = "auto";
    this.audio.addEventListener("ended", () => this.set({ playing: null }));
    this.audio.addEventListener("error", () => this.set({ playing: null }));
  }

  getState = (): ReplayVoiceState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** Play `url` from `offset` seconds at `rate` (the replay's speed, within what audio can do). */
  start(id: string, url: string, offset: number, rate: number, muted: boolean): void {
    this.attempt++;
    this.wanted = { id, url, offset };
    this.audio.pause();
    if (muted || rate > MAX_RATE) {
      this.set({ playing: null });
      return;
    }
    const target = new URL(url, window.location.href);
    // A media fragment starts it part-way without waiting for metadata to seek.
    target.hash = offset > 0 ? `t=${offset.toFixed(2)}` : "";
    this.audio.src = target.toString();
    this.setRate(rate);
    void this.play(id);
  }

  /** The replay paused: hold the voice where it is. */
  pause(): void {
    this.attempt++;
    this.audio.pause();
    this.set({ playing: null });
  }

  /** The replay went on (without a seek): go on from where the voice was held. */
  resume(muted: boolean): void {
    const id = this.wanted?.id;
    if (!id || muted || this.state.rate > MAX_RATE || !this.audio.src || this.audio.ended) return;
    void this.play(id);
  }

  /** A seek or a new replay: nothing of the old voice goes on. */
  stop(): void {
    this.attempt++;
    this.wanted = null;
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
    this.set({ playing: null });
  }

  /** The replay's speed: the voice follows it, or falls silent above MAX_RATE. */
  setRate(rate: number): void {
    if (rate > MAX_RATE) {
      this.pause();
      this.set({ rate });
      return;
    }
    const clamped = Math.max(MIN_RATE, rate);
    this.audio.playbackRate = clamped;
    this.audio.defaultPlaybackRate = clamped;
    this.set({ rate });
  }

  /** The one click that lets the browser play sound: start what was refused. */
  unblock(): void {
    this.set({ blocked: false });
    if (this.wanted && this.audio.src) void this.play(this.wanted.id);
  }

  dispose(): void {
    this.stop();
    this.listeners.clear();
  }

  private async play(id: string): Promise<void> {
    const attempt = ++this.attempt;
    try {
      await this.audio.play();
      if (attempt === this.attempt) this.set({ playing: id, blocked: false });
    } catch (error) {
      if (attempt !== this.attempt) return; // superseded (AbortError from our own pause)
      const refused = error instanceof DOMException && error.name === "NotAllowedError";
      this.set({ playing: null, blocked: refused });
    }
  }

  private set(patch: Partial<ReplayVoiceState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l();
  }
}
