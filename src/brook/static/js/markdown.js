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

const HIGHLIGHT_LIMIT = 50000; // characters: longer code stays plain (one sanitize of it
                               // would hold the page up for too long)

/** Asks the worker to highlight a finished code block (unlabeled code gets its language
 * guessed); applied when it answers, if the block still shows the same text. */
function highlightBlock(code, text, label) {
  if (text.length > HIGHLIGHT_LIMIT) return;
  highlight(text, label, true).then((result) => {
    if (result) applyHighlight(code, text, result);
  });
}

/** Markdown tokens to a sanitized fragment. `mode`: "final" (finished blocks: their code
 * is highlighted in full), "open" (the block being written: its code shows the worker's
 * last highlighting of it) or "plain" (code is left as plain text). */
function renderTokens(tokens, view, mode) {
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
    if (mode === "final") {
      codes.forEach(({ text, label }, i) => highlightBlock(elements[i], text, label));
    } else if (mode === "open" && view && codes.length) {
      view.highlightLive(codes.at(-1));
    }
  }
  return fragment;
}

// An open list, table or code block longer than this is rendered a piece at a time (see
// MarkdownView.grow): shorter ones are rendered whole on each update.
const GROW_CHARS = 2000;

/** How a block grows, for the kinds that are rendered a piece at a time. Each piece (list
 * item, table row) is rendered and sanitized on its own and its element moved into the
 * block's (sanitized) list or table; code grows as text. */
const GROWERS = {
  list: {
    key: (t) => `${t.ordered}|${t.start}|${t.loose}`,
    parts: (t) => t.items,
    done: (t, n) => t.items.slice(0, n).map((item) => item.raw).join(""),
    slice: (t, a, b) => ({ ...t, items: t.items.slice(a, b) }),
    holder: (node) => node, // the <ul> or <ol>
    // node: a rendered <ul> or <ol>; its items with the line breaks after them
    pieces: (node) => [...node.childNodes]
      .filter((child, i) => i > 0 || child.nodeType === Node.ELEMENT_NODE),
    place: (holder) => holder,
  },
  table: {
    key: (t) => JSON.stringify([t.header.map((cell) => cell.text), t.align]),
    parts: (t) => t.rows,
    done: (t, n) => t.raw.split("\n").slice(0, n + 2).join("\n"),
    slice: (t, a, b) => ({ ...t, rows: t.rows.slice(a, b) }),
    holder: (node) => node.querySelector("table"), // node: its .table-wrap
    // node: a rendered .table-wrap; its rows with the line breaks after them
    pieces: (node) => [...(node.querySelector("table > tbody")?.childNodes || [])],
    place: (table) => table.tBodies[0] || table.createTBody(),
  },
};

/** Renders a growing Markdown text into a container, block by block.
 *
 * The text is split into top-level Markdown blocks (marked's lexer). Blocks that are
 * finished (another block has started after them) are rendered once and their DOM kept;
 * only the last, open block is rendered again on each update, so the work per update is
 * bounded by the size of the open block, not by the whole answer. A long open list, table
 * or code block grows a piece at a time instead (grow()): then only its last item or row,
 * or the code added, is rendered on each update (and the block is lexed again). */
export class MarkdownView {
  constructor(container) {
    this.container = container;
    this.reset();
  }

  reset() {
    this.generation = (this.generation || 0) + 1; // outdates answers from the worker
    this.live = null; // {text, html, language}: the open code block, last highlighted
    this.growing = null; // the open block, when it is rendered a piece at a time
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
      // The block that was growing is finished: complete it where it is.
      const first = this.growing && this.grow(done[0], true) ? 1 : 0;
      this.dropGrowing();
      if (done.length > first) this.container.append(renderTokens(done.slice(first), this, "final"));
      this.live = null; // the open block is another one now
      this.generation += 1;
    }
    if (!final && last >= 0 && !this.grow(tokens[last], false)) {
      this.dropGrowing();
      const fragment = renderTokens(tokens.slice(cut), this, "open");
      this.openNodes = [...fragment.childNodes];
      this.container.append(fragment);
    }
  }

  /** Renders a long open list, table or code block a piece at a time: the pieces (items,
   * rows) that are finished once, then only the last one again on each update, so that
   * the work per update does not grow with the block. With `finished`, completes the
   * block that was growing. False if `token` is not such a block, or not the same one as
   * before (the caller then renders it whole). */
  grow(token, finished) {
    let g = this.growing;
    if (g && (g.type !== token.type || g.key !== g.grower.key(token))) return false;
    if (token.type === "code") return this.growCode(token, finished);
    const grower = GROWERS[token.type];
    if (!grower) return false;
    const parts = grower.parts(token);
    const stable = finished ? parts.length : parts.length - 1; // the last may still grow
    // A piece rendered as finished is gone or changed: render the block anew.
    if (g && (stable < g.done || grower.done(token, g.done) !== g.doneRaw)) return false;
    if (!g) {
      if (finished || token.raw.length < GROW_CHARS) return false;
      const fragment = renderTokens([grower.slice(token, 0, stable)], this, "final");
      const node = fragment.firstElementChild;
      const holder = node && grower.holder(node);
      if (!holder) return false;
      g = { type: token.type, key: grower.key(token), grower, node, holder, done: stable, tail: [] };
      this.container.append(fragment);
    } else if (stable > g.done) {
      const fragment = renderTokens([grower.slice(token, g.done, stable)], this, "final");
      grower.place(g.holder).append(...grower.pieces(fragment.firstElementChild));
      g.done = stable;
    }
    g.doneRaw = grower.done(token, g.done);
    for (const node of g.tail) node.remove();
    g.tail = [];
    if (stable < parts.length) {
      const fragment = renderTokens([grower.slice(token, stable, parts.length)], this, "open");
      g.tail = grower.pieces(fragment.firstElementChild);
      grower.place(g.holder).append(...g.tail);
    }
    this.growing = finished ? null : g;
    return true;
  }

  /** grow() for code: the text that was added is appended as text; the block is
   * highlighted when it is finished. */
  growCode(token, finished) {
    let g = this.growing;
    const label = ((token.lang || "").match(/^\S*/) || [""])[0].toLowerCase();
    if (g && !token.text.startsWith(g.text) && !this.trimCode(token.text)) return false;
    if (!g) {
      if (finished || token.raw.length < GROW_CHARS) return false;
      // The first rendering shows the worker's last highlighting of it, if any.
      const fragment = renderTokens([token], this, "plain");
      const node = fragment.firstElementChild;
      const code = node && node.querySelector("pre > code");
      if (!code) return false;
      const grower = { key: (t) => t.lang || "" };
      g = { type: "code", key: grower.key(token), grower, node, code, text: token.text };
      this.container.append(fragment);
    } else if (token.text.length > g.text.length) {
      g.code.append(token.text.slice(g.text.length));
      g.text = token.text;
    }
    if (finished) highlightBlock(g.code, token.text, label);
    this.growing = finished ? null : g;
    return true;
  }

  /** The growing code block's text was not a beginning of `text` (the start of a closing
   * fence is not code once the fence is complete): drop what differs, if it is in the text
   * appended last. */
  trimCode(text) {
    const g = this.growing;
    let same = 0;
    while (same < text.length && same < g.text.length && text[same] === g.text[same]) same += 1;
    let extra = g.text.length - same;
    while (extra > 0) {
      const node = g.code.lastChild;
      if (!node || node.nodeType !== Node.TEXT_NODE) return false;
      if (node.data.length <= extra) {
        extra -= node.data.length;
        node.remove();
      } else {
        node.data = node.data.slice(0, node.data.length - extra);
        extra = 0;
      }
    }
    g.text = text.slice(0, same);
    return true;
  }

  dropGrowing() {
    if (!this.growing) return;
    this.growing.node.remove();
    this.growing = null;
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
