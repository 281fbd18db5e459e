// The message box: grows with its text, Enter sends and Shift+Enter breaks the line, a
// character counter near the limit, and a draft kept per conversation (localStorage).
const DRAFT_PREFIX = "brook.draft.";
const NEW_CHAT = "new";

export const countChars = (text) => {
  // Code points, as the server counts them (a surrogate pair is one character).
  let pairs = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) pairs += 1;
  }
  return text.length - pairs;
};

const storage = {
  get(key) {
    try {
      return window.localStorage.getItem(DRAFT_PREFIX + key) || "";
    } catch {
      return "";
    }
  },
  set(key, value) {
    try {
      if (value) window.localStorage.setItem(DRAFT_PREFIX + key, value);
      else window.localStorage.removeItem(DRAFT_PREFIX + key);
    } catch {
      // Storage full or disabled: the draft is simply not kept.
    }
  },
};

/** Makes a textarea grow with its content, up to its CSS max-height. */
export function autoGrow(textarea) {
  const fit = () => {
    textarea.style.height = "auto";
    textarea.style.height = `${textarea.scrollHeight + 2}px`;
  };
  textarea.addEventListener("input", fit);
  return fit;
}

/** Enter submits (calls `submit`), Shift+Enter inserts a line break; IME input is left alone. */
export function enterSends(textarea, submit) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey
        && !event.metaKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
}

export class Composer {
  constructor({ form, prompt, send, stop, counter, max, onSubmit, onStop }) {
    Object.assign(this, { form, prompt, send, stop, counter, max });
    this.key = NEW_CHAT;
    this.loaded = false; // nothing to save before the first draft is shown
    this.state = "idle"; // idle | sending | streaming
    this.saveTimer = 0;
    this.fit = autoGrow(prompt);
    enterSends(prompt, () => this.submit());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.onSubmit = onSubmit;
    stop.addEventListener("click", onStop);
    prompt.addEventListener("input", () => {
      this.updateCounter();
      this.scheduleSave();
    });
    window.addEventListener("pagehide", () => this.saveNow());
    this.updateCounter();
  }

  get length() {
    return countChars(this.prompt.value);
  }

  get over() {
    return this.length > this.max;
  }

  submit() {
    if (this.state !== "idle" || this.over || !this.prompt.value.trim()) return;
    this.onSubmit(this.prompt.value);
  }

  setState(state) {
    this.state = state;
    this.form.dataset.state = state;
    this.prompt.readOnly = state === "sending";
    this.stop.hidden = state !== "streaming";
    this.send.hidden = state === "streaming";
    this.updateCounter();
  }

  updateCounter() {
    const length = this.length;
    const near = Number.isFinite(this.max) && length >= this.max * 0.8;
    this.counter.hidden = !near;
    const over = length > this.max;
    if (near) {
      this.counter.textContent = over
        ? `${(length - this.max).toLocaleString()} characters over the limit of ${this.max.toLocaleString()}`
        : `${length.toLocaleString()} / ${this.max.toLocaleString()} characters`;
    }
    this.counter.dataset.over = String(over);
    if (over) this.prompt.setAttribute("aria-invalid", "true");
    else this.prompt.removeAttribute("aria-invalid");
    this.send.disabled = this.state !== "idle" || over;
  }

  // ---- drafts ----

  /** Shows the draft of another conversation (null: a new chat), keeping the current one. */
  switchTo(conversationId) {
    if (this.loaded) this.saveNow();
    this.loaded = true;
    this.key = conversationId || NEW_CHAT;
    this.prompt.value = storage.get(this.key);
    this.fit();
    this.updateCounter();
  }

  /** The new chat got its id: its draft now belongs to that conversation. */
  adopt(conversationId) {
    if (this.key !== NEW_CHAT) return;
    storage.set(NEW_CHAT, "");
    this.key = conversationId;
    this.scheduleSave();
  }

  /** After a send: clears the box (and the draft) if it still holds what was sent. */
  sent(text, conversationId) {
    if (this.key === conversationId) {
      if (this.prompt.value === text) {
        this.prompt.value = "";
        this.fit();
        this.updateCounter();
      }
      this.saveNow();
    } else if (storage.get(conversationId) === text) {
      storage.set(conversationId, "");
    }
  }

  forget(conversationId) {
    storage.set(conversationId, "");
  }

  scheduleSave() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.saveNow(), 250);
  }

  saveNow() {
    clearTimeout(this.saveTimer);
    if (!this.loaded) return;
    storage.set(this.key, this.prompt.value);
  }
}
