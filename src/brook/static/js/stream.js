// Following one answer's server-sent events. The server resumes from Last-Event-ID (ids
// are character offsets), so the browser's own reconnect loses and doubles nothing; if the
// browser gives up (an HTTP error), we ask the API where the answer stands and reopen
// after the last event we got. An interrupted answer is shown as the API stores it.
// Rendering is batched to animation frames.

// At most this often (and in an animation frame): a fast stream sends 100 events a second,
// and each render lays out and paints the page again. A render that took long (a long
// open block) waits RENDER_SHARE times as long before the next.
const MIN_RENDER_MS = 50;
const RENDER_SHARE = 4;

function parseData(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}

function withAfter(url, after) {
  if (after === null || after === "") return url;
  return `${url}${url.includes("?") ? "&" : "?"}after=${encodeURIComponent(after)}`;
}

/** Streams an answer into `view` (a MarkdownView).
 *
 * hooks: render() after each batched update, progress(data) on a `progress` event (the
 * model's download and load before the first text; null once text comes or the answer
 * ends), thinking(open) -> the MarkdownView of the answer's reasoning (made on the first
 * `reasoning` event; open: whether it streams now, false once the answer's text begins or
 * the answer ends), stored(message) when the answer is shown as the API stores it,
 * error(error) on a server `error` event,
 * connection(state) with "live" or "reconnecting", end(status, error, usage) when it is
 * over (usage: the answer's token counts, if known),
 * recover() -> Promise<message|null> to ask where the answer stands after the browser
 * gave up (null: give up too). */
export class AnswerStream {
  constructor(url, view, hooks) {
    this.url = url;
    this.view = view;
    this.hooks = hooks;
    this.error = null;
    this.lastId = null;
    this.frame = 0;
    this.timer = 0;
    this.lastRender = 0;
    this.renderMs = 0; // how long the last render took
    this.closed = false;
    this.attempts = 0;
    this.source = null;
    this.thought = null; // the reasoning's view, once the first `reasoning` event came
    view.reset(); // an answer still streaming is shown from the start of its stream
    this.connect(null);
  }

  connect(after) {
    const source = new EventSource(withAfter(this.url, after));
    this.source = source;
    source.addEventListener("open", () => {
      if (source === this.source) this.hooks.connection("live");
    });
    source.addEventListener("progress", (event) => {
      if (source !== this.source || this.view.text) return;
      const data = parseData(event);
      if (!data) return;
      this.lastId = event.lastEventId || this.lastId;
      this.attempts = 0;
      this.hooks.progress(data);
    });
    source.addEventListener("reasoning", (event) => {
      if (source !== this.source) return;
      const data = parseData(event);
      if (!data || typeof data.text !== "string") return;
      if (!this.thought) {
        this.hooks.progress(null);
        this.thought = this.hooks.thinking(true);
      }
      this.lastId = event.lastEventId || this.lastId;
      this.attempts = 0;
      this.thought.append(data.text);
      this.schedule();
    });
    source.addEventListener("message", (event) => {
      if (source !== this.source) return;
      const data = parseData(event);
      if (!data || typeof data.text !== "string") return;
      if (!this.view.text) {
        this.hooks.progress(null);
        this.closeThinking();
      }
      this.lastId = event.lastEventId || this.lastId;
      this.attempts = 0;
      this.view.append(data.text);
      this.schedule();
    });
    source.addEventListener("error", (event) => {
      if (source !== this.source) return;
      if (event instanceof MessageEvent) {
        // The server's `error` event: the answer failed; its `end` follows.
        const data = parseData(event) || {};
        this.error = { code: data.code || "error", message: data.message || "" };
        this.hooks.error(this.error);
      } else if (source.readyState === EventSource.CLOSED) {
        this.recover();
      } else {
        this.hooks.connection("reconnecting"); // the browser retries on its own
      }
    });
    source.addEventListener("end", (event) => {
      if (source !== this.source) return;
      const data = parseData(event) || {};
      if (data.status === "interrupted") this.interrupted();
      else this.finish(data.status || "complete", this.error, data.usage || null);
    });
  }

  /** The writer died: the answer keeps what it stored, which may end before what was shown
   * (the end's id is then below the last one). Shows exactly the stored text, as the API
   * has it: the server counts code points, JavaScript strings UTF-16 units. */
  async interrupted() {
    this.source.close();
    let message = null;
    for (let attempt = 0; attempt < 3 && !this.closed; attempt += 1) {
      if (attempt) await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      try {
        message = await this.hooks.recover();
        break;
      } catch {
        // The API is unreachable too: try again, then keep what is shown.
      }
    }
    if (this.closed) return;
    if (message && message.status !== "streaming") this.showStored(message);
    this.finish("interrupted", this.error);
  }

  /** Shows the answer as the API stores it (its reasoning too). */
  showStored(message) {
    this.view.setText(message.content || "");
    if (message.reasoning && !this.thought) this.thought = this.hooks.thinking(false);
    if (this.thought) this.thought.setText(message.reasoning || "");
    this.hooks.stored(message);
  }

  /** The reasoning is over (the answer's text began, or the answer ended): its last
   * render, and its block closes. */
  closeThinking() {
    if (!this.thought || this.thoughtDone) return;
    this.thoughtDone = true;
    this.thought.render(true);
    this.hooks.thinking(false);
  }

  schedule() {
    if (this.frame || this.timer || this.closed) return;
    const wait = this.lastRender + Math.max(MIN_RENDER_MS, RENDER_SHARE * this.renderMs)
      - performance.now();
    if (wait <= 0) {
      this.frame = requestAnimationFrame(() => this.flush());
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = 0;
      this.frame = requestAnimationFrame(() => this.flush());
    }, wait);
  }

  flush() {
    this.frame = 0;
    if (this.closed) return;
    this.lastRender = performance.now();
    if (this.thought && !this.thoughtDone) this.thought.render(false);
    this.view.render(false);
    this.hooks.render();
    this.renderMs = performance.now() - this.lastRender;
  }

  async recover() {
    this.source.close();
    this.hooks.connection("reconnecting");
    if (this.attempts >= 4) {
      this.finish("error", { code: "connection_lost",
        message: "Lost the connection to this answer. Reload the page to try again." });
      return;
    }
    this.attempts += 1;
    await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** this.attempts));
    if (this.closed) return;
    let message = null;
    try {
      message = await this.hooks.recover();
    } catch {
      this.recover(); // the API is unreachable too: try again later
      return;
    }
    if (this.closed) return;
    if (message && message.status === "streaming") {
      this.connect(this.lastId); // the server resumes after the last event we got
    } else if (message) {
      this.showStored(message);
      this.finish(message.status, message.error, message.usage || null);
    } else {
      this.finish("error", { code: "not_found", message: "This answer is gone." });
    }
  }

  finish(status, error, usage = null) {
    if (this.closed) return;
    this.close();
    this.closeThinking();
    this.view.render(true);
    this.hooks.end(status, error, usage);
  }

  close() {
    this.closed = true;
    if (this.source) this.source.close();
    if (this.frame) cancelAnimationFrame(this.frame);
    clearTimeout(this.timer);
    this.frame = 0;
    this.timer = 0;
  }
}
