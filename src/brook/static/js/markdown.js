// Model output is untrusted Markdown: rendered with marked (raw HTML escaped, code
// highlighted with highlight.js), then sanitized with DOMPurify, every time, before it
// touches the page. Nothing in an answer may make the browser fetch anything: not from
// another origin, and not from Brook's own either (a GET there carries the user's cookies).
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";
import hljs from "../vendor/highlight/common.js";

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

const AUTODETECT_LIMIT = 5000; // characters; guessing the language of more is too slow
let autoDetect = false; // guess the language of unlabeled code (finished blocks only)

function isDataImage(url) {
  return /^data:image\//i.test(String(url).trim());
}

function hostOf(url) {
  try {
    const parsed = new URL(url, document.baseURI);
    return /^https?:$/.test(parsed.protocol) ? parsed.host : "";
  } catch {
    return "";
  }
}

function highlightCode(text, language) {
  if (language && hljs.getLanguage(language)) {
    return { html: hljs.highlight(text, { language, ignoreIllegals: true }).value, language };
  }
  if (!language && autoDetect && text.length <= AUTODETECT_LIMIT) {
    const guess = hljs.highlightAuto(text);
    if (guess.language && guess.relevance >= 5) return { html: guess.value, language: guess.language };
  }
  return { html: escapeHtml(text), language: "" };
}

const md = new Marked({
  gfm: true,
  renderer: {
    // Raw HTML in an answer is shown as the text it is, never parsed as markup; a block of
    // it keeps its own paragraph and line breaks.
    html: ({ text, block }) =>
      block ? `<p class="raw-html">${escapeHtml(text.replace(/\n+$/, ""))}</p>\n` : escapeHtml(text),
    code({ text, lang }) {
      const label = ((lang || "").match(/^\S*/) || [""])[0];
      const { html, language } = highlightCode(text, label.toLowerCase());
      const cls = language ? ` language-${escapeHtml(language)}` : "";
      return `<pre data-language="${escapeHtml(label || language)}"><code class="hljs${cls}">${html}</code></pre>\n`;
    },
    // Only inline data: images are shown; any other image is a placeholder naming it.
    image({ href, text }) {
      if (href && isDataImage(href)) return false; // marked's own rendering
      const host = hostOf(href || "");
      const what = text ? `“${escapeHtml(text)}”` : "an image";
      const from = host ? ` from ${escapeHtml(host)}` : "";
      return `<span class="blocked-image">Image not loaded: ${what}${from}</span>`;
    },
  },
});

// Set once (DOMPurify otherwise parses its configuration again on every call).
DOMPurify.setConfig({
  USE_PROFILES: { html: true }, // no SVG or MathML
  FORBID_TAGS: ["style", "form", "audio", "video", "source", "track", "picture"],
  FORBID_ATTR: ["style", "srcset", "poster", "ping"],
  SANITIZE_NAMED_PROPS: true, // prefix id/name so output cannot shadow page ids
  RETURN_DOM_FRAGMENT: true,
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  if (node.hasAttribute("src") && !isDataImage(node.getAttribute("src"))) {
    node.removeAttribute("src");
  }
});

// Code blocks get a header with their language and a Copy button; code and tables scroll
// sideways on their own and can be reached by keyboard to do so.
function decorate(fragment) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const block = document.createElement("div");
    block.className = "code-block";
    const header = document.createElement("div");
    header.className = "code-header";
    const lang = document.createElement("span");
    lang.className = "code-lang";
    lang.textContent = pre.dataset.language || "code";
    // Text only: nothing but the model's own (sanitized) markup and plain text inside
    // an answer's content, no SVG.
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy-code";
    copy.dataset.action = "copy-code";
    copy.setAttribute("aria-label", "Copy code");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = "Copy";
    copy.append(label);
    header.append(lang, copy);
    pre.replaceWith(block);
    pre.tabIndex = 0;
    block.append(header, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.tabIndex = 0;
    table.replaceWith(wrap);
    wrap.append(table);
  }
  return fragment;
}

function renderTokens(tokens, final) {
  autoDetect = final;
  try {
    const html = md.parser(tokens);
    return decorate(DOMPurify.sanitize(html));
  } finally {
    autoDetect = false;
  }
}

/** Renders a growing Markdown text into a container, block by block.
 *
 * The text is split into top-level Markdown blocks (marked's lexer). Blocks that are
 * finished (another block has started after them) are rendered once and their DOM kept;
 * only the last, open block is rendered again on each update. The work per update is
 * bounded by the size of the open block, not by the whole answer. */
export class MarkdownView {
  constructor(container) {
    this.container = container;
    this.reset();
  }

  reset() {
    this.text = "";
    this.committed = 0; // characters of `text` rendered as finished blocks
    this.openNodes = [];
    this.pendingCR = false;
    this.container.replaceChildren();
  }

  append(chunk) {
    // marked normalizes line endings; do it here so offsets match its tokens' `raw`.
    const text = (this.pendingCR && chunk.startsWith("\n") ? chunk.slice(1) : chunk);
    this.pendingCR = text.endsWith("\r");
    this.text += text.replace(/\r\n?/g, "\n");
  }

  setText(text) {
    this.reset();
    this.append(text);
  }

  /** Brings the DOM up to date; `final` renders the last block as finished too. */
  render(final = false) {
    const tokens = md.lexer(this.text.slice(this.committed));
    let last = tokens.length - 1;
    while (last >= 0 && tokens[last].type === "space") last -= 1;
    const cut = final ? tokens.length : Math.max(last, 0);
    for (const node of this.openNodes) node.remove();
    this.openNodes = [];
    if (cut > 0) {
      const done = tokens.slice(0, cut);
      this.committed += done.reduce((n, token) => n + token.raw.length, 0);
      this.container.append(renderTokens(done, true));
    }
    if (!final && last >= 0) {
      const fragment = renderTokens(tokens.slice(cut), false);
      this.openNodes = [...fragment.childNodes];
      this.container.append(fragment);
    }
  }
}
