// Opening a long conversation quickly: every message is on the page at once, the newest
// answers rendered; older answers show as plain text first and become Markdown in idle
// time, newest first, or as soon as they scroll near the view. The log stays aria-busy
// meanwhile, so screen readers do not read each upgrade as a new message.
import { renderPending } from "./messages.js";

const FIRST_MS = 30; // rendered before the first paint (at least MIN_FIRST answers)
const MIN_FIRST = 3;
const SLICE_MS = 10; // per idle slice afterwards

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
    let done = 0;
    while (pending.length && (done < MIN_FIRST || performance.now() - started < FIRST_MS)) {
      renderPending(pending.shift());
      done += 1;
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

  onVisible(entries) {
    let any = false;
    for (const entry of entries) {
      const record = entry.isIntersecting && this.byElement.get(entry.target);
      if (record && record.pending) {
        this.render(record);
        any = true;
      }
    }
    if (any) this.changed();
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
    this.observer?.disconnect();
  }
}
