/** Microphone recording with MediaRecorder, for hold-to-talk voice messages. */

export interface Recording {
  /** Stop and hand over what was recorded. */
  stop(): Promise<{ blob: Blob; mimeType: string; durationMs: number }>;
  /** Stop and throw it away. */
  cancel(): void;
}

// In order of preference; the server is told which one it gets.
const TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];

export function canRecord(): boolean {
  return typeof MediaRecorder !== "undefined" && Boolean(navigator.mediaDevices?.getUserMedia);
}

export async function startRecording(): Promise<Recording> {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const mimeType = TYPES.find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
  const parts: Blob[] = [];
  recorder.addEventListener("dataavailable", (e) => {
    if (e.data.size > 0) parts.push(e.data);
  });
  const startedAt = performance.now();
  recorder.start();
  // Release the microphone (and its indicator in the browser) as soon as we are done.
  const release = () => stream.getTracks().forEach((t) => t.stop());

  return {
    stop: () =>
      new Promise((resolve, reject) => {
        recorder.addEventListener(
          "stop",
          () => {
            release();
            const type = recorder.mimeType || mimeType || "audio/webm";
            resolve({
              blob: new Blob(parts, { type }),
              mimeType: type,
              durationMs: performance.now() - startedAt,
            });
          },
          { once: true },
        );
        recorder.addEventListener(
          "error",
          () => {
            release();
            reject(new Error("Recording failed."));
          },
          { once: true },
        );
        if (recorder.state !== "inactive") recorder.stop();
      }),
    cancel: () => {
      if (recorder.state !== "inactive") recorder.stop();
      release();
    },
  };
}
