import { type ComponentProps, memo, type ReactNode, useRef, useState } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import rehypeHighlight from "rehype-highlight";
import rehypeSanitize from "rehype-sanitize";
import remarkBreaks from "remark-breaks";
import remarkGfm from "remark-gfm";
import { remarkHtmlAsText, safeUrl, sanitizeSchema } from "./plugins";
import "./markdown.css";

// Line breaks as typed (chat, not documents), as GitHub's comments do.
const REMARK = [remarkGfm, remarkBreaks, remarkHtmlAsText];
// Sanitize first, then highlight: the highlighter's spans are made by us, not the message.
const REHYPE = [
  [rehypeSanitize, sanitizeSchema],
  [rehypeHighlight, { detect: false }],
] as ComponentProps<typeof ReactMarkdown>["rehypePlugins"];

function ExternalLink({ href, children }: ComponentProps<"a">) {
  if (!href) return <>{children}</>;
  return (
    <a href={href} target="_blank" rel="noopener noreferrer">
      {children}
    </a>
  );
}

/** A code block with a copy button (the text as written, not as highlighted). */
function CodeBlock({ children }: ComponentProps<"pre">) {
  const pre = useRef<HTMLPreElement>(null);
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    const text = pre.current?.querySelector("code")?.textContent ?? "";
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      /* no clipboard (insecure origin): the text can still be selected */
    }
  };
  return (
    <div className="code-block">
      <button type="button" className="copy-code small" onClick={copy} data-testid="copy-code">
        {copied ? "Copied" : "Copy"}
      </button>
      <pre ref={pre} dir="ltr">
        {children}
      </pre>
    </div>
  );
}

const COMPONENTS: Components = {
  a: ExternalLink,
  pre: CodeBlock,
  // Images from a message could track readers: shown as a link to the picture instead.
  img: ({ src, alt }) =>
    typeof src === "string" && src ? <ExternalLink href={src}>{alt || "image"}</ExternalLink> : null,
};

/**
 * A message's text as Markdown; `after` (the cursor while a reply streams) follows the
 * last block, which CSS keeps inline so the cursor sits after the last word.
 */
export const Markdown = memo(function Markdown({ text, after }: { text: string; after?: ReactNode }) {
  return (
    <>
      <ReactMarkdown
        remarkPlugins={REMARK}
        rehypePlugins={REHYPE}
        components={COMPONENTS}
        urlTransform={safeUrl}
      >
        {text}
      </ReactMarkdown>
      {after}
    </>
  );
});
