// Model output is untrusted Markdown: rendered with marked (raw HTML escaped), then
// sanitized with DOMPurify, every time, before it touches the page. Code is highlighted by
// highlight.js in a worker (highlighter.js), and what the worker returns is sanitized too
// before it replaces the plain text of a block. Nothing in an answer may make the browser
// fetch anything: not from another origin, and not from Brook's own either (a GET there
// carries the user's cookies).
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";
import { highlight } from "./highlighter.js";

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

// What md.parser() is rendering now: the view, and the code blocks met ({text, label}).
let job = null;
// Labels the worker does not highlight (not a language it knows): not asked again live.
const plainLabels = new Set();

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

/** A code block's first rendering, before the worker's: plain text, or, for the block an
 * answer is still writing, the highlighting of what it had written when last asked for
 * (view.live) followed by the rest as plain text. */
function interim(view, text) {
  const live = view && view.live;
  if (live && live.text && text.startsWith(live.text)) {
    return { html: live.html + escapeHtml(text.slice(live.text.length)), language: live.language };
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
      const { html, language } = interim(job && job.view, text);
      job?.codes.push({ text, label: label.toLowerCase() });
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

/** Replaces a code block's plain text with the worker's highlighting of the same text. */
function applyHighlight(code, text, { html, language }) {
  if (code.textContent !== text) return;
  const colored = DOMPurify.sanitize(html);
  if (colored.textContent !== text) return; // colours only: never other text
  code.replaceChildren(colored);
  code.className = `hljs language-${language}`;
  const pre = code.parentElement;
  if (pre && !pre.dataset.language) { // a guessed language: name it in the block's header
    pre.dataset.language = language;
    const name = pre.parentElement?.querySelector(":scope > .code-header > .code-lang");
    if (name) name.textContent = language;
  }
}

function renderTokens(tokens, view, final) {
  job = { view, codes: [] };
  let fragment;
  let codes;
  try {
    fragment = decorate(DOMPurify.sanitize(md.parser(tokens)));
  } finally {
    codes = job.codes;
    job = null;
  }
  // Every code token became one <pre><code> (raw HTML is escaped, so there are no others).
  const elements = fragment.querySelectorAll("pre > code");
  if (elements.length === codes.length) {
    if (final) {
      // Unlabeled code gets its language guessed (finished blocks only).
      codes.forEach(({ text, label }, i) => {
        highlight(text, label, true).then((result) => {
          if (result) applyHighlight(elements[i], text, result);
        });
      });
    } else if (view && codes.length) {
      view.highlightLive(codes.at(-1));
    }
  }
  return fragment;
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
    this.generation = (this.generation || 0) + 1; // outdates answers from the worker
    this.live = null; // {text, html, language}: the open code block, last highlighted
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
      this.container.append(renderTokens(done, this, true));
      this.live = null; // the open block is another one now
      this.generation += 1;
    }
    if (!final && last >= 0) {
      const fragment = renderTokens(tokens.slice(cut), this, false);
      this.openNodes = [...fragment.childNodes];
      this.container.append(fragment);
    }
  }

  /** Asks the worker to highlight the code block being written (labeled code only: the
   * language of unlabeled code is guessed when it is finished), one request at a time;
   * the next render shows it. */
  highlightLive({ text, label }) {
    if (this.liveBusy || !label || plainLabels.has(label) || this.live?.text === text) return;
    this.liveBusy = true;
    const { generation } = this;
    highlight(text, label).then((result) => {
      this.liveBusy = false;
      if (!result) plainLabels.add(label);
      else if (generation === this.generation) this.live = { text, ...result };
    });
  }
}
