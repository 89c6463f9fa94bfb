/** `GET /api/features` (DESIGN §4): what this server can do, so the page shows only that. */
import { useEffect, useState } from "react";

export interface Features {
  /** Replies are spoken: the mute switch and play buttons of Tom's voice. */
  tts: boolean;
  /** Voice messages are transcribed: the microphone. */
  asr: boolean;
  llm: string;
  characters: boolean;
  trustedIdentity: boolean;
}

/** What an older server (no such route) or a failed request means: nothing optional. */
export const NO_FEATURES: Features = {
  tts: false,
  asr: false,
  llm: "",
  characters: false,
  trustedIdentity: false,
};

let loading: Promise<Features> | null = null;

export function loadFeatures(): Promise<Features> {
  loading ??= fetch("/api/features", { headers: { Accept: "application/json" } })
    .then(async (r) => (r.ok ? { ...NO_FEATURES, ...((await r.json()) as Partial<Features>) } : NO_FEATURES))
    .catch(() => {
      loading = null; // a network hiccup: ask again next time
      return NO_FEATURES;
    });
  return loading;
}

/** The server's features; null until known (show nothing optional meanwhile). */
export function useFeatures(): Features | null {
  const [features, setFeatures] = useState<Features | null>(null);
  useEffect(() => {
    let gone = false;
    void loadFeatures().then((f) => gone || setFeatures(f));
    return () => {
      gone = true;
    };
  }, []);
  return features;
}
