// When Brook is busy: a request to start an answer refused with 503 `overloaded` (or
// `shutting_down`, during a restart) stored nothing, so the page sends it again after the
// server's Retry-After, plus up to a second of jitter so that a burst of refused browsers
// does not come back as one burst. Each refusal waits at least twice as long as the one
// before; at the MAX_REFUSALS-th the page stops and leaves it to the user. A visible notice
// counts down and offers Cancel; a status region says it once per refusal (a countdown
// read aloud every second would drown everything else).

const BUSY_CODES = new Set(["overloaded", "shutting_down"]);
const MAX_REFUSALS = 6;
const JITTER_MS = 1000;
const DEFAULT_SECONDS = 2;

/** Whether an ApiError is a refusal that is worth sending again as it is. */
export const isBusy = (err) => err.status === 503 && BUSY_CODES.has(err.code);

const LEADS = {
  message: "Brook is busy right now, so your message was not sent yet.",
  edit: "Brook is busy right now, so your edited message was not sent yet.",
  regenerate: "Brook is busy right now, so it could not answer again yet.",
};

const GIVE_UP = {
  message: "Brook is still too busy to answer, so your message was not sent. It is still in "
    + "the message box: send it again when you are ready.",
  edit: "Brook is still too busy to answer, so your edited message was not sent. Send it "
    + "again when you are ready.",
  regenerate: "Brook is still too busy to answer. Try again in a little while.",
};

const again = (kind) => (kind === "regenerate" ? "Trying again" : "Sending it again");
const countdown = (kind, seconds) =>
  `${again(kind)} in ${seconds} second${seconds === 1 ? "" : "s"}.`;

export class BusyNotice {
  /** `fallback` takes the focus when the notice hides while it has it. */
  constructor({ box, text, cancel, status, fallback }) {
    Object.assign(this, { box, text, cancelButton: cancel, status, fallback });
    this.kind = null; // what is waiting: "message" | "edit" | "regenerate", or null
    this.settle = null;
    this.timer = 0;
    this.ticker = 0;
    cancel.addEventListener("click", () => this.cancel("user"));
  }

  /** What waits to be sent again (its kind), while it waits. */
  get waiting() {
    return this.settle ? this.kind : null;
  }

  /** Waits after the `refusals`-th refusal (the server asked for `retryAfter` seconds).
   * Resolves to "send" when it is time to send again, "user" if the user cancelled,
   * "dropped" if the page did (done()), or at once to "gave-up" after too many refusals
   * (giveUpText() says so). */
  wait(kind, retryAfter, refusals) {
    this.cancel("dropped");
    if (refusals >= MAX_REFUSALS) return Promise.resolve("gave-up");
    const seconds = Math.max(retryAfter ?? DEFAULT_SECONDS, 2 ** (refusals - 1), 1);
    const due = performance.now() + seconds * 1000 + Math.random() * JITTER_MS;
    const left = () => Math.max(1, Math.ceil((due - performance.now()) / 1000));
    this.kind = kind;
    this.box.hidden = false;
    this.cancelButton.disabled = false;
    const lead = LEADS[kind];
    const tick = () => { this.text.textContent = `${lead} ${countdown(kind, left())}`; };
    tick();
    this.ticker = setInterval(tick, 250);
    this.say(this.text.textContent);
    return new Promise((resolve) => {
      this.settle = resolve;
      this.timer = setTimeout(() => {
        this.stopTimers();
        this.settle = null;
        this.text.textContent = `${again(kind)} now…`;
        this.cancelButton.disabled = true; // on its way: too late to take it back
        resolve("send");
      }, due - performance.now());
    });
  }

  giveUpText(kind) {
    return GIVE_UP[kind];
  }

  /** Ends the wait, if any, resolving it to `why`. */
  cancel(why = "dropped") {
    this.stopTimers();
    const settle = this.settle;
    this.settle = null;
    if (settle) settle(why);
  }

  /** Hides the notice (the attempt it waited for is over). */
  done() {
    this.cancel("dropped");
    this.kind = null;
    if (this.box.contains(document.activeElement)) this.fallback.focus();
    this.box.hidden = true;
    this.text.textContent = "";
    this.status.textContent = "";
  }

  stopTimers() {
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    this.timer = 0;
    this.ticker = 0;
  }

  say(text) {
    // Emptied first, so the same sentence again is announced again.
    this.status.textContent = "";
    setTimeout(() => { if (this.kind) this.status.textContent = text; }, 50);
  }
}
