import { useSyncExternalStore } from "react";

/** Anything with subscribe/getter in the shape useSyncExternalStore wants. */

export function useStore<T>(subscribe: (l: () => void) => () => void, get: () => T): T {
  return useSyncExternalStore(subscribe, get, get);
}
