// Opening a long conversation quickly: every message is on the page at once, the newest
// answers rendered; older answers show as plain text first and become Markdown in idle
// time, newest first, or as soon as they scroll near the view. The log stays aria-busy
// meanwhile, so screen readers do not read each upgrade as a new message.
import { renderPending } from "./messages.js";

// Rendered before the first paint: the newest answers, until they hold FIRST_CHARS
// characters (more than a tall window shows below the newest question) or FIRST_MS is spent.
const FIRST_CHARS = 3000;
const FIRST_MS = 25;
const SLICE_MS = 10; // per idle slice afterwards, and per batch that scrolls into view

const idle = (callback) => ("requestIdleCallback" in window
  ? { idle: window.requestIdleCallback(callback, { timeout: 150 }) }
  : { timer: setTimeout(callback, 16) });
const cancelIdle = (handle) => {
  if (!handle) return;
  if ("idle" in handle) window.cancelIdleCallback(handle.idle);
  else clearTimeout(handle.timer);
};

export class Backlog {
  /** log: the message log (aria-busy while upgrading); changed(): after each slice. */
  constructor(log, changed) {
    this.log = log;
    this.changed = changed;
    this.queue = [];
    this.handle = null;
    this.near = []; // pending answers near the view
    this.nearTimer = 0;
    this.byElement = new WeakMap();
    this.observer = "IntersectionObserver" in window
      ? new IntersectionObserver((entries) => this.onVisible(entries),
        { root: log, rootMargin: "800px 0px" })
      : null;
  }

  /** Renders the newest pending answers now and queues the others (records oldest first). */
  start(records) {
    this.stop();
    const pending = records.filter((record) => record.pending).reverse();
    const started = performance.now();
    let chars = 0;
    while (pending.length && chars < FIRST_CHARS && (!chars || performance.now() - started < FIRST_MS)) {
      const record = pending.shift();
      renderPending(record);
      chars += record.view.text.length;
    }
    this.queue = pending;
    for (const record of pending) {
      this.byElement.set(record.el, record);
      this.observer?.observe(record.el);
    }
    if (pending.length) this.log.setAttribute("aria-busy", "true");
    this.schedule();
  }

  schedule() {
    if (!this.queue.length) {
      this.finish();
      return;
    }
    this.handle = idle(() => this.slice());
  }

  slice() {
    this.handle = null;
    const started = performance.now();
    while (this.queue.length && performance.now() - started < SLICE_MS) this.render(this.queue.shift());
    this.changed();
    this.schedule();
  }

  /** Answers that come near the view are rendered before the others, a slice at a time
   * (newest first), even while the background upgrade is paused. */
  onVisible(entries) {
    for (const entry of entries) {
      const record = entry.isIntersecting && this.byElement.get(entry.target);
      if (record && record.pending && !this.near.includes(record)) this.near.push(record);
    }
    this.near.sort((a, b) => (a.el.compareDocumentPosition(b.el) & Node.DOCUMENT_POSITION_FOLLOWING ? 1 : -1));
    if (this.near.length && !this.nearTimer) this.renderNear();
  }

  renderNear() {
    this.nearTimer = 0;
    const started = performance.now();
    while (this.near.length && performance.now() - started < SLICE_MS) this.render(this.near.shift());
    if (this.near.length) this.nearTimer = setTimeout(() => this.renderNear());
    this.changed();
  }

  render(record) {
    this.observer?.unobserve(record.el);
    if (record.pending) renderPending(record);
  }

  finish() {
    this.log.removeAttribute("aria-busy");
  }

  /** An answer is being asked for: stop upgrading in the background (what scrolls into
   * view is still rendered) and let the log speak again. */
  yield() {
    cancelIdle(this.handle);
    this.handle = null;
    this.finish();
  }

  stop() {
    this.yield();
    this.queue = [];
    this.near = [];
    clearTimeout(this.nearTimer);
    this.nearTimer = 0;
    this.observer?.disconnect();
  }
}
