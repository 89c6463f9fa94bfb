import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { Markdown } from "./Markdown";
import { safeUrl } from "./plugins";

const html = (text: string) => renderToStaticMarkup(<Markdown text={text} />);

describe("Markdown", () => {
  it("renders GitHub-flavoured Markdown", () => {
    expect(html("**bold** and *it*")).toBe("<p><strong>bold</strong> and <em>it</em></p>");
    expect(html("- one\n- two")).toBe("<ul>\n<li>one</li>\n<li>two</li>\n</ul>");
    expect(html("| a | b |\n| - | - |\n| 1 | 2 |")).toContain("<td>1</td><td>2</td>");
    expect(html("~~gone~~")).toBe("<p><del>gone</del></p>");
    // Line breaks as typed.
    expect(html("one\ntwo")).toBe("<p>one<br/>\ntwo</p>");
  });

  it("highlights fenced code and gives it a copy button", () => {
    const out = html("```python\nprint('hi')\n```");
    expect(out).toContain(
      '<button type="button" class="copy-code small" data-testid="copy-code">Copy</button>',
    );
    expect(out).toContain('<code class="hljs language-python">');
    expect(out).toContain('<span class="hljs-built_in">print</span>');
    expect(html("`x < y`")).toBe("<p><code>x &lt; y</code></p>");
  });

  it("opens links in a new tab without handing over the opener", () => {
    expect(html("[site](https://example.org/a?b=1)")).toBe(
      '<p><a href="https://example.org/a?b=1" target="_blank" rel="noopener noreferrer">site</a></p>',
    );
    expect(html("see https://example.org")).toContain('href="https://example.org"');
  });

  it("never renders HTML from a message", () => {
    expect(html("<script>alert(1)</script>")).toBe("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
    expect(html('hi <img src=x onerror="alert(1)">')).toBe(
      "<p>hi &lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>",
    );
    expect(html("[x](javascript:alert(1))")).toBe("<p>x</p>");
    expect(html("[x](JAVA\tSCRIPT:alert(1))")).not.toContain("href");
    expect(html("![pic](https://example.org/p.png)")).toBe(
      '<p><a href="https://example.org/p.png" target="_blank" rel="noopener noreferrer">pic</a></p>',
    );
  });
});

describe("safeUrl", () => {
  it("keeps web and mail links and drops the rest", () => {
    expect(safeUrl("https://a.example/x")).toBe("https://a.example/x");
    expect(safeUrl("mailto:a@b.example")).toBe("mailto:a@b.example");
    expect(safeUrl("#top")).toBe("#top");
    expect(safeUrl("javascript:alert(1)")).toBe("");
    expect(safeUrl(" java\nscript:alert(1)")).toBe("");
    expect(safeUrl("data:text/html,<b>")).toBe("");
    expect(safeUrl("//evil.example/x")).toBe("");
  });
});
