// Brook browser front end: conversation list, message log, composer and
// streaming answers over server-sent events. No build step; plain ES module.
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

const $ = (selector) => document.querySelector(selector);
const els = {
  list: $("#conversation-list"),
  newChat: $("#new-chat"),
  title: $("#conversation-title"),
  messages: $("#messages"),
  notice: $("#notice"),
  form: $("#composer"),
  prompt: $("#prompt"),
  stop: $("#stop"),
};
const APP_NAME = document.body.dataset.appName || "Brook";
const MAX_CHARS = Number(document.body.dataset.maxMessageChars) || Infinity;
const STATUS_NOTES = {
  stopped: "Stopped before the answer was finished.",
  interrupted: "Interrupted: the answer was cut off.",
};

const state = {
  currentId: null, // id of the conversation shown, or null for a new chat
  view: 0, // bumped whenever the shown conversation changes
  listToken: 0,
  sending: false,
  streams: new Map(), // assistant message id -> live stream
};

// ---- Markdown rendering (model output is untrusted) ----------------------

// Raw HTML in an answer is shown as the text it is, never parsed as markup (as the big chat
// apps do); DOMPurify below still cleans whatever Markdown itself produces.
const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
marked.use({ gfm: true, renderer: { html: ({ text }) => escapeHtml(text) } });

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true }, // no SVG or MathML
  FORBID_TAGS: ["style", "form", "audio", "video", "source", "track"],
  FORBID_ATTR: ["style", "srcset", "poster"],
  SANITIZE_NAMED_PROPS: true, // prefix id/name so output cannot shadow page ids
};

function isSameOrigin(url) {
  try {
    return new URL(url, document.baseURI).origin === window.location.origin;
  } catch {
    return false;
  }
}

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  // Nothing in an answer may make the browser fetch from another origin.
  if (node.hasAttribute("src") && !isSameOrigin(node.getAttribute("src"))) {
    node.removeAttribute("src");
  }
});

function renderMarkdown(target, text) {
  target.innerHTML = DOMPurify.sanitize(marked.parse(text), PURIFY_CONFIG);
}

// ---- HTTP ------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status = 0, code = "error") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, url, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new ApiError("Could not reach the server. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // A non-JSON body is only acceptable for errors; handled below.
  }
  if (!response.ok || data === null) {
    const error = data && data.error;
    throw new ApiError(
      (error && error.message) || `The server could not handle the request (HTTP ${response.status}).`,
      response.status,
      (error && error.code) || "http_error",
    );
  }
  return data;
}

const conversationUrl = (id) => `/api/conversations/${encodeURIComponent(id)}`;

// ---- Small view helpers ----------------------------------------------------

function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = false;
}

function clearNotice() {
  els.notice.hidden = true;
  els.notice.textContent = "";
}

function setTitle(title) {
  const text = title || "New chat";
  els.title.textContent = text;
  document.title = `${text} · ${APP_NAME}`;
}

function nearBottom() {
  const m = els.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom() {
  els.messages.scrollTop = els.messages.scrollHeight;
}

function hashId() {
  return new URLSearchParams(window.location.hash.slice(1)).get("c");
}

function markCurrent() {
  for (const button of els.list.querySelectorAll("button.conversation")) {
    if (button.dataset.id === state.currentId) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function updateStopButton() {
  els.stop.hidden = state.streams.size === 0;
}

// ---- Messages ----------------------------------------------------------------

function setStatus(el, status, error) {
  el.dataset.status = status;
  if (status !== "streaming") el.removeAttribute("aria-busy");
  for (const old of el.querySelectorAll(":scope > .error, :scope > .note")) old.remove();
  if (error || status === "error") {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = (error && error.message) || "Something went wrong while writing this answer.";
    el.append(p);
  }
  if (STATUS_NOTES[status]) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = STATUS_NOTES[status];
    el.append(p);
  }
}

function messageElement(msg) {
  const el = document.createElement("article");
  el.className = "message";
  el.dataset.role = msg.role;
  el.dataset.id = msg.id;
  el.dataset.status = msg.status;
  const sender = document.createElement("p");
  sender.className = "sender";
  sender.textContent = msg.role === "user" ? "You" : APP_NAME;
  const content = document.createElement("div");
  content.className = "content";
  el.append(sender, content);
  if (msg.role === "user") {
    content.textContent = msg.content;
  } else if (msg.status !== "streaming" || !msg.stream_url) {
    renderMarkdown(content, msg.content || "");
    setStatus(el, msg.status, msg.error);
  }
  return el;
}

// ---- Streaming answers ------------------------------------------------------

function parseData(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}

function renderStream(stream) {
  stream.frame = 0;
  const stick = nearBottom();
  renderMarkdown(stream.el.querySelector(".content"), stream.text);
  if (stick) scrollToBottom();
}

function closeStream(id) {
  const stream = state.streams.get(id);
  if (!stream) return null;
  stream.source.close();
  if (stream.frame) cancelAnimationFrame(stream.frame);
  state.streams.delete(id);
  updateStopButton();
  return stream;
}

function closeAllStreams() {
  for (const id of [...state.streams.keys()]) closeStream(id);
}

// Opens the stream of an assistant message from the start: the server replays
// the whole answer, so any text shown before is discarded.
function openStream(el, url, attempt = 0) {
  const id = el.dataset.id;
  closeStream(id);
  const stream = { el, text: "", error: null, frame: 0, source: new EventSource(url) };
  state.streams.set(id, stream);
  el.querySelector(".content").replaceChildren();
  setStatus(el, "streaming", null);
  el.setAttribute("aria-busy", "true");
  updateStopButton();

  stream.source.addEventListener("message", (event) => {
    const data = parseData(event);
    if (!data || typeof data.text !== "string") return;
    stream.text += data.text;
    if (!stream.frame) stream.frame = requestAnimationFrame(() => renderStream(stream));
  });
  stream.source.addEventListener("error", (event) => {
    if (event instanceof MessageEvent) {
      // A server-sent `error` event: the answer failed; an `end` follows.
      const data = parseData(event) || {};
      stream.error = { code: data.code, message: data.message };
      setStatus(el, "streaming", stream.error);
      el.setAttribute("aria-busy", "true");
    } else if (stream.source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an HTTP error); transient drops reconnect
      // on their own and resume after Last-Event-ID.
      recoverStream(el, attempt);
    }
  });
  stream.source.addEventListener("end", (event) => {
    const data = parseData(event) || {};
    if (!closeStream(id)) return;
    renderStream(stream);
    setStatus(el, data.status || "complete", stream.error);
    refreshList();
  });
}

async function recoverStream(el, attempt) {
  const id = el.dataset.id;
  const view = state.view;
  closeStream(id);
  await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
  if (view !== state.view) return;
  try {
    const conversation = await api("GET", conversationUrl(state.currentId));
    if (view !== state.view) return;
    const msg = conversation.messages.find((m) => m.id === id);
    if (msg && msg.status === "streaming" && msg.stream_url && attempt < 3) {
      openStream(el, msg.stream_url, attempt + 1);
      return;
    }
    if (msg && msg.status !== "streaming") {
      renderMarkdown(el.querySelector(".content"), msg.content || "");
      setStatus(el, msg.status, msg.error);
      return;
    }
  } catch {
    if (view !== state.view) return;
  }
  setStatus(el, "error", { message: "Lost the connection to this answer. Reload the page to try again." });
}

// ---- Conversations ------------------------------------------------------------

async function refreshList() {
  const token = ++state.listToken;
  let data;
  try {
    data = await api("GET", "/api/conversations");
  } catch (err) {
    showNotice(err.message);
    return;
  }
  if (token !== state.listToken) return;
  const focusedId = els.list.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  els.list.replaceChildren(
    ...data.conversations.map((conversation) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "conversation";
      button.dataset.id = conversation.id;
      button.textContent = conversation.title || "Untitled chat";
      li.append(button);
      return li;
    }),
  );
  markCurrent();
  const current = data.conversations.find((c) => c.id === state.currentId);
  if (current) setTitle(current.title);
  if (focusedId) els.list.querySelector(`button[data-id="${CSS.escape(focusedId)}"]`)?.focus();
}

function resetView(id) {
  state.view += 1;
  closeAllStreams();
  state.currentId = id;
  els.messages.replaceChildren();
  clearNotice();
  markCurrent();
}

function showNewChat() {
  resetView(null);
  setTitle(null);
}

async function openConversation(id) {
  resetView(id);
  const view = state.view;
  els.messages.setAttribute("aria-busy", "true");
  let conversation;
  try {
    conversation = await api("GET", conversationUrl(id));
  } catch (err) {
    if (view !== state.view) return;
    els.messages.removeAttribute("aria-busy");
    showNotice(err.message);
    if (err.status === 404) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
      state.currentId = null;
      markCurrent();
      setTitle(null);
    }
    return;
  }
  if (view !== state.view) return;
  setTitle(conversation.title);
  for (const msg of conversation.messages) {
    const el = messageElement(msg);
    els.messages.append(el);
    if (msg.role === "assistant" && msg.status === "streaming" && msg.stream_url) {
      openStream(el, msg.stream_url);
    }
  }
  els.messages.removeAttribute("aria-busy");
  scrollToBottom();
}

async function sendMessage() {
  if (state.sending) return;
  const text = els.prompt.value;
  if (!text.trim()) return;
  const length = [...text].length;
  if (length > MAX_CHARS) {
    showNotice(`Your message is ${length} characters long; the limit is ${MAX_CHARS}.`);
    return;
  }
  state.sending = true;
  clearNotice();
  const view = state.view;
  try {
    let id = state.currentId;
    if (!id) {
      id = (await api("POST", "/api/conversations", {})).id;
      if (view === state.view) {
        state.currentId = id;
        window.location.hash = `c=${encodeURIComponent(id)}`; // hashchange sees it is current
      }
    }
    const result = await api("POST", `${conversationUrl(id)}/messages`, { content: text });
    if (els.prompt.value === text) els.prompt.value = "";
    if (view === state.view && state.currentId === id) {
      const assistant = messageElement(result.assistant_message);
      els.messages.append(messageElement(result.user_message), assistant);
      const url = result.stream_url || result.assistant_message.stream_url;
      if (url) openStream(assistant, url);
      scrollToBottom();
    }
    refreshList();
  } catch (err) {
    showNotice(err.message);
  } finally {
    state.sending = false;
  }
}

async function stopAnswer() {
  for (const id of [...state.streams.keys()]) {
    try {
      await api("POST", `/api/messages/${encodeURIComponent(id)}/stop`, {});
    } catch (err) {
      showNotice(err.message);
    }
  }
  els.prompt.focus();
}

// ---- Wiring -------------------------------------------------------------------

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  sendMessage();
  els.prompt.focus();
});

els.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    els.form.requestSubmit();
  }
});

els.stop.addEventListener("click", stopAnswer);

els.newChat.addEventListener("click", () => {
  if (window.location.hash) history.pushState(null, "", window.location.pathname + window.location.search);
  showNewChat();
  els.prompt.focus();
});

els.list.addEventListener("click", (event) => {
  const button = event.target.closest("button.conversation");
  if (button) window.location.hash = `c=${encodeURIComponent(button.dataset.id)}`;
});

window.addEventListener("hashchange", () => {
  const id = hashId();
  if (id === state.currentId) return;
  if (id) openConversation(id);
  else showNewChat();
});

refreshList();
const initialId = hashId();
if (initialId) openConversation(initialId);
else showNewChat();
