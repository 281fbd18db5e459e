// One message on the page: its element, its status line and its action buttons.
import { iconButton } from "./icons.js";
import { MarkdownView } from "./markdown.js";
import { autoGrow, enterSends } from "./composer.js";
import { modelName } from "./settings.js";

const APP_NAME = document.body.dataset.appName || "Brook";

const NOTES = {
  stopped: "Stopped before the answer was finished.",
  interrupted: "Interrupted: the answer was cut off, and the part after this point was lost.",
};
const RETRYABLE = new Set(["error", "interrupted"]);
const DEFAULT_ERROR = "Something went wrong while writing this answer.";

function actionButton(iconName, label, action) {
  const button = iconButton(iconName, label, { className: `action ${action}` });
  button.dataset.action = action;
  return button;
}

// A message's element, built once per role and cloned: a long conversation has hundreds.
const PROTOTYPES = {};

function prototypeOf(role) {
  if (PROTOTYPES[role]) return PROTOTYPES[role];
  const el = document.createElement("article");
  el.className = "message";
  el.dataset.role = role;
  const sender = document.createElement("p");
  sender.className = "sender";
  sender.textContent = role === "user" ? "You" : APP_NAME;
  if (role !== "user") {
    const model = document.createElement("span");
    model.className = "answer-model"; // the model that wrote it, shown on hover or focus
    sender.append(model);
  }
  const content = document.createElement("div");
  content.className = "content";
  const actions = document.createElement("div");
  actions.className = "message-actions";
  el.append(sender, content);
  if (role === "user") {
    actions.append(actionButton("pencil", "Edit", "edit"));
  } else {
    const statusLine = document.createElement("div");
    statusLine.className = "status-line";
    el.append(statusLine);
    const usage = actionButton("info", "Tokens used", "usage");
    usage.setAttribute("aria-expanded", "false");
    actions.append(actionButton("copy", "Copy", "copy-answer"),
      actionButton("refresh", "Regenerate", "regenerate"), usage);
  }
  el.append(actions);
  PROTOTYPES[role] = el;
  return el;
}

/** A message record: {id, role, el, content, status, error, view?, pending?} with its
 * element. With `defer`, a finished answer shows as plain text until renderPending(). */
export function createMessage(msg, { defer = false } = {}) {
  const role = msg.role === "user" ? "user" : "assistant";
  const el = prototypeOf(role).cloneNode(true);
  el.dataset.id = msg.id;
  const content = el.children[1];

  const record = {
    id: msg.id, role: msg.role, el, content, status: msg.status, error: null,
    usage: msg.usage || null,
  };
  if (role !== "user" && msg.model) {
    el.dataset.model = msg.model;
    el.querySelector(".answer-model").textContent = ` · ${modelName(msg.model)}`;
  }
  if (role === "user") {
    record.text = msg.content;
    content.textContent = msg.content;
  } else {
    record.view = new MarkdownView(content);
    if (msg.reasoning && msg.status !== "streaming") {
      const thinking = thinkingOf(record);
      thinking.view.setText(msg.reasoning);
      thinking.defer(); // closed: rendered when opened
    }
    if (msg.status !== "streaming") {
      record.view.setText(msg.content || "");
      if (defer && msg.content) {
        record.pending = true;
        el.classList.add("pending");
        content.textContent = msg.content;
      } else {
        record.view.render(true);
      }
    }
  }
  setStatus(record, msg.status, msg.error);
  return record;
}

/** The answer's "Thinking" block: the model's reasoning, rendered and sanitized as answers
 * are, in a <details> that is open while it streams and closed after. Made on first use:
 * most answers have none. {el, view, setOpen(open)} */
export function thinkingOf(record) {
  if (record.thinking) return record.thinking;
  const el = document.createElement("details");
  el.className = "thinking";
  const summary = document.createElement("summary");
  const body = document.createElement("div");
  body.className = "content thinking-content";
  el.append(summary, body);
  record.content.before(el);
  const view = new MarkdownView(body);
  let rendered = true; // a stored reasoning is rendered when first opened
  const thinking = {
    el,
    view,
    setOpen(open) {
      el.open = open;
      summary.textContent = open ? "Thinking…" : "Thinking";
      if (open) el.setAttribute("aria-busy", "true");
      else el.removeAttribute("aria-busy");
    },
    defer() {
      rendered = false;
      body.textContent = view.text;
    },
  };
  el.addEventListener("toggle", () => {
    if (el.open && !rendered) {
      rendered = true;
      body.replaceChildren();
      view.render(true);
    }
  });
  thinking.setOpen(false);
  record.thinking = thinking;
  return thinking;
}

/** Takes an answer's Thinking block away (its stream is read again from the start). */
export function clearThinking(record) {
  record.thinking?.el.remove();
  record.thinking = null;
}

/** Renders a deferred answer's Markdown in place of its plain text. */
export function renderPending(record) {
  record.pending = false;
  record.el.classList.remove("pending");
  record.content.replaceChildren();
  record.view.render(true);
}

export function setStatus(record, status, error) {
  const { el } = record;
  record.status = status;
  record.error = error || null;
  el.dataset.status = status;
  if (status === "streaming") el.setAttribute("aria-busy", "true");
  else el.removeAttribute("aria-busy");
  const line = el.querySelector(":scope > .status-line");
  if (!line) return;
  el.classList.remove("preparing");
  line.replaceChildren();
  if (error || status === "error") {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = (error && error.message) || DEFAULT_ERROR;
    line.append(p);
  } else if (NOTES[status]) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = NOTES[status];
    line.append(p);
  }
  if (RETRYABLE.has(status)) line.append(actionButton("refresh", "Retry", "retry"));
}

function formatBytes(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} kB`;
  return `${bytes} B`;
}

function progressText(data) {
  const model = data.model || "the model";
  if (data.phase === "load") {
    return data.waiting ? `Waiting for ${model} to load into memory…`
      : `Loading ${model} into memory…`;
  }
  const start = data.waiting ? `Waiting for ${model} to download` : `Downloading ${model}`;
  if (!data.total) return `${start}…`;
  const percent = Math.floor((100 * data.done) / data.total);
  return `${start}: ${formatBytes(data.done)} of ${formatBytes(data.total)} (${percent} %)`;
}

/** Shows the model being made ready (a `progress` event's data: its download, then its
 * load into memory) in place of the answer's pulsing dot; null, or the phase `ready`, takes
 * it away. */
export function setProgress(record, progress) {
  const line = record.el.querySelector(":scope > .status-line");
  if (!line) return;
  const data = progress && progress.phase !== "ready" ? progress : null;
  let box = line.querySelector(":scope > .model-progress");
  record.el.classList.toggle("preparing", Boolean(data));
  if (!data) {
    box?.remove();
    return;
  }
  if (!box) {
    box = document.createElement("div");
    box.className = "model-progress";
    const label = document.createElement("p");
    label.className = "note";
    label.id = `progress-${record.id}`;
    const bar = document.createElement("progress");
    bar.setAttribute("aria-labelledby", label.id);
    const file = document.createElement("p");
    file.className = "note file";
    box.append(label, bar, file);
    line.prepend(box);
  }
  const [label, bar, file] = box.children;
  label.textContent = progressText(data);
  if (data.phase === "download" && data.total) {
    bar.max = data.total;
    bar.value = data.done;
  } else {
    bar.removeAttribute("value"); // indeterminate
  }
  const current = data.phase === "download"
    && (data.files || []).find((f) => f.total === null || f.done < f.total);
  file.textContent = current
    ? `${current.name}: ${formatBytes(current.done)}${current.total ? ` of ${formatBytes(current.total)}` : ""}`
    : "";
  file.hidden = !current;
}

/** Shows a streaming answer's connection state ("live" clears it). */
export function setConnection(record, state) {
  const line = record.el.querySelector(":scope > .status-line");
  if (!line) return;
  line.querySelector(".connection")?.remove();
  if (state === "reconnecting") {
    const p = document.createElement("p");
    p.className = "note connection";
    p.textContent = "Connection lost, reconnecting…";
    line.append(p);
  }
}

/** Which actions a message offers now. */
export function updateActions(record, { isLast, busy }) {
  const streaming = record.status === "streaming";
  const retry = record.el.querySelector("button[data-action=retry]");
  if (retry) {
    retry.hidden = !isLast || streaming;
    retry.disabled = busy;
  }
  const regenerate = record.el.querySelector("button[data-action=regenerate]");
  if (regenerate) {
    regenerate.hidden = !isLast || streaming || Boolean(retry); // Retry says it already
    regenerate.disabled = busy;
  }
  const edit = record.el.querySelector("button[data-action=edit]");
  if (edit) edit.disabled = busy;
  const copy = record.el.querySelector("button[data-action=copy-answer]");
  if (copy) copy.hidden = streaming || !record.view.text;
  const usage = record.el.querySelector("button[data-action=usage]");
  if (usage) usage.hidden = streaming || !record.usage;
}

const count = new Intl.NumberFormat();

/** Shows or hides an answer's token counts (its Tokens button), in its status line. */
export function toggleUsage(record, button) {
  const line = record.el.querySelector(":scope > .status-line");
  const shown = line.querySelector(":scope > .usage-note");
  button.setAttribute("aria-expanded", shown ? "false" : "true");
  if (shown) {
    shown.remove();
    return;
  }
  const { prompt_tokens: prompt, completion_tokens: completion } = record.usage || {};
  const note = document.createElement("p");
  note.className = "note usage-note";
  const total = (prompt || 0) + (completion || 0);
  note.textContent = `This answer used ${count.format(total)} tokens: `
    + `${prompt === null || prompt === undefined ? "?" : count.format(prompt)} for the prompt, `
    + `${completion === null || completion === undefined ? "?" : count.format(completion)} `
    + "for the answer.";
  line.append(note);
}

/** Turns a user message into an edit box holding `draft`; resolves to the new text, or null
 * if cancelled. */
export function editMessage(record, draft = record.text) {
  return new Promise((resolve) => {
    const form = document.createElement("form");
    form.className = "edit-form";
    const input = document.createElement("textarea");
    input.className = "edit-input";
    input.value = draft;
    input.rows = 1;
    input.setAttribute("aria-label", "Edit your message");
    const buttons = document.createElement("div");
    buttons.className = "edit-actions";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.className = "edit-cancel";
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Send";
    save.className = "edit-save primary";
    buttons.append(cancel, save);
    form.append(input, buttons);
    record.el.classList.add("editing");
    record.content.hidden = true;
    record.content.after(form);
    const fit = autoGrow(input);
    fit();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);

    const done = (value) => {
      form.remove();
      record.el.classList.remove("editing");
      record.content.hidden = false;
      resolve(value);
    };
    enterSends(input, () => form.requestSubmit());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      done(text);
    });
    cancel.addEventListener("click", () => done(null));
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        done(null);
      }
    });
  });
}
