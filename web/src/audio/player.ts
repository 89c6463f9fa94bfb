/**
 * Tom's voice. One <audio> element plays one thing at a time: the newest reply's voice
 * as soon as it arrives (unless muted), or whatever a person asked to hear.
 *
 * Browsers refuse to start sound before the person has interacted with the page. When
 * that happens the player remembers what it wanted to play and reports `blocked`, and
 * the UI offers one click that plays it and unblocks the rest.
 */

export interface PlayerState {
  muted: boolean;
  /** Auto-play was refused by the browser; a click on `unblock()` fixes it. */
  blocked: boolean;
  /** Shown for a moment after unblocking, so the click has a visible answer. */
  notice: string | null;
  /** The key (message id) of what is playing, if anything. */
  playing: string | null;
}

const MUTE_KEY = "tomchat.muted";

export class VoicePlayer {
  private readonly audio: HTMLAudioElement;
  private state: PlayerState;
  private readonly listeners = new Set<() => void>();
  private waiting: { key: string; url: string } | null = null;
  private noticeTimer: ReturnType<typeof setTimeout> | null = null;

  /** `createAudio` is for tests; the page uses a real <audio> element. */
  constructor(createAudio: () => HTMLAudioElement = () => new Audio()) {
    this.audio = createAudio();
    this.audio.preload = "auto";
    this.state = { muted: readMuted(), blocked: false, notice: null, playing: null };
    const ended = () => this.set({ playing: null });
    this.audio.addEventListener("ended", ended);
    this.audio.addEventListener("pause", ended);
    this.audio.addEventListener("error", ended);
  }

  getState = (): PlayerState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** A reply's voice just arrived: play it now unless muted. */
  autoplay(key: string, url: string): void {
    if (this.state.muted) return;
    void this.start(key, url, true);
  }

  /** The play button of a message: play it, or stop it if it is the one playing. */
  toggle(key: string, url: string): void {
    if (this.state.playing === key) {
      this.audio.pause();
      return;
    }
    void this.start(key, url, false);
  }

  /** The one click that lets the browser play sound; plays what was refused. */
  unblock(): void {
    const waiting = this.waiting;
    this.waiting = null;
    this.set({ blocked: false });
    if (waiting) void this.start(waiting.key, waiting.url, false);
    this.flash("Sound is on: Tom's voice will play by itself from now on.");
  }

  setMuted(muted: boolean): void {
    try {
      localStorage.setItem(MUTE_KEY, muted ? "1" : "0");
    } catch {
      /* storage disabled */
    }
    if (muted) {
      this.audio.pause();
      this.waiting = null;
    }
    this.set({ muted, blocked: muted ? false : this.state.blocked });
  }

  dispose(): void {
    this.audio.pause();
    this.audio.removeAttribute("src");
    if (this.noticeTimer) clearTimeout(this.noticeTimer);
    this.listeners.clear();
  }

  private async start(key: string, url: string, automatic: boolean): Promise<void> {
    this.audio.pause();
    this.audio.src = url;
    try {
      await this.audio.play();
      this.set({ playing: key, blocked: false });
    } catch (error) {
      if (isAutoplayRefusal(error)) {
        this.waiting = { key, url };
        this.set({ blocked: true, playing: null });
      } else if (!automatic) {
        this.flash("That audio could not be played.");
      }
    }
  }

  private flash(notice: string): void {
    if (this.noticeTimer) clearTimeout(this.noticeTimer);
    this.set({ notice });
    this.noticeTimer = setTimeout(() => this.set({ notice: null }), 4_000);
  }

  private set(patch: Partial<PlayerState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l();
  }
}

function isAutoplayRefusal(error: unknown): boolean {
  return error instanceof DOMException && error.name === "NotAllowedError";
}

function readMuted(): boolean {
  try {
    return localStorage.getItem(MUTE_KEY) === "1";
  } catch {
    return false;
  }
}
