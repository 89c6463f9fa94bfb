/**
 * The Markdown pipeline's rules, apart from React so vitest can check them in Node.
 *
 * Messages come from people and from language models: both are shown as Markdown
 * (GitHub-flavoured), never as HTML. HTML written in a message is shown as the text it
 * is; links may only go to http(s), mailto or in-page anchors; the sanitizer (GitHub's
 * rules, `rehype-sanitize`) runs on whatever is left.
 */
import { defaultSchema, type Options as SanitizeSchema } from "rehype-sanitize";

interface Node {
  type: string;
  value?: string;
  children?: Node[];
}

const BLOCK_PARENTS = new Set(["root", "blockquote", "listItem", "footnoteDefinition"]);

/** remark plugin: raw HTML (`<script>`, `<img onerror>`) becomes literal text. */
export function remarkHtmlAsText() {
  return (tree: Node) => {
    const walk = (node: Node) => {
      node.children = node.children?.map((child) => {
        if (child.type !== "html") return child;
        const text = { type: "text", value: child.value };
        // An HTML block stands where a paragraph would: it becomes one.
        return BLOCK_PARENTS.has(node.type) ? { type: "paragraph", children: [text] } : text;
      });
      node.children?.forEach(walk);
    };
    walk(tree);
  };
}

const SAFE_PROTOCOL = /^(https?|mailto):/i;

/** The href or src a link may keep: http(s), mailto, relative, or nothing at all. */
export function safeUrl(url: string): string {
  const trimmed = url.trim();
  // Browsers ignore control characters and whitespace inside a scheme ("java\nscript:").
  const compact = trimmed.replace(/[\u0000-\u0020\u007f-\u009f]/g, "");
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(compact);
  if (scheme) return SAFE_PROTOCOL.test(compact) ? trimmed : "";
  // "//host/path" would leave the site: only real relative paths and anchors stay.
  return compact.startsWith("//") ? "" : trimmed;
}

/** GitHub's sanitize schema, plus the `language-*` and highlight classes on code. */
export const sanitizeSchema: SanitizeSchema = {
  ...defaultSchema,
  // No clobber prefix games needed: nothing here uses ids for navigation.
  attributes: {
    ...defaultSchema.attributes,
    code: [...(defaultSchema.attributes?.code ?? []), ["className", /^language-[\w+-]+$/]],
  },
  protocols: { href: ["http", "https", "mailto"], src: ["http", "https"] },
};
