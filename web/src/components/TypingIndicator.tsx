import { Fragment } from "react";
import type { TypingPeople } from "../live/typing";
import { typingLine } from "../live/typing";
import { useStore } from "../lib/useStore";

/**
 * "Alice is typing…" below the transcript. The line keeps its height when empty, so the
 * transcript does not jump as people start and stop. Not a live region: a screen reader
 * hearing it on every start and stop would drown out the messages themselves.
 */
export function TypingIndicator({ typing }: { typing: TypingPeople }) {
  const names = useStore(typing.subscribe, typing.getNames);
  const line = typingLine(names);
  return (
    <div className="typing muted small" data-testid="typing" aria-live="off">
      {line?.names.map((name, i) => (
        <Fragment key={name}>
          {i > 0 && " and "}
          <bdi>{name}</bdi>
        </Fragment>
      ))}
      {line?.rest}
    </div>
  );
}
