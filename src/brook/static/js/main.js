// Brook's chat page: wires the sidebar, the message log, the composer and the answer
// streams together. Plain ES modules, no build step.
import { api, urls } from "./api.js";
import { copyText, flashCopied } from "./clipboard.js";
import { Composer, countChars } from "./composer.js";
import { createMessage, editMessage, setConnection, setStatus, updateActions } from "./messages.js";
import { Follower } from "./scroll.js";
import { Sidebar } from "./sidebar.js";
import { AnswerStream } from "./stream.js";

const $ = (selector) => document.querySelector(selector);
const els = {
  app: $("#app"),
  title: $("#conversation-title"),
  messages: $("#messages"),
  notice: $("#notice"),
  prompt: $("#prompt"),
  announcer: $("#announcer"),
  newChat: $("#new-chat"),
};
const APP_NAME = document.body.dataset.appName || "Brook";
const MAX_CHARS = Number(document.body.dataset.maxMessageChars) || Infinity;

const state = {
  currentId: null, // the conversation shown, or null for a new chat
  view: 0, // bumped whenever the shown conversation changes
  records: [], // the messages shown, in order (see messages.js)
  streams: new Map(), // answer id -> AnswerStream, for the conversation shown
  sending: false, // a send, regenerate or edit request is on its way
  conversations: [],
  listToken: 0,
};

const channel = "BroadcastChannel" in window ? new BroadcastChannel("brook") : null;
const broadcast = (message) => channel?.postMessage(message);

// ---- small view helpers ----------------------------------------------------------------------

function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = false;
}

function clearNotice() {
  els.notice.hidden = true;
  els.notice.textContent = "";
}

function announce(text) {
  els.announcer.textContent = "";
  setTimeout(() => { els.announcer.textContent = text; }, 50);
}

function setTitle(title) {
  const text = title || (state.currentId ? "Untitled chat" : "New chat");
  els.title.textContent = text;
  document.title = `${text} · ${APP_NAME}`;
}

const hashId = () => new URLSearchParams(window.location.hash.slice(1)).get("c");
const plainUrl = () => window.location.pathname + window.location.search;

const follower = new Follower(els.messages, $("#jump-latest"), () => els.prompt.focus());

const composer = new Composer({
  form: $("#composer"),
  prompt: els.prompt,
  send: $("#send"),
  stop: $("#stop"),
  counter: $("#char-count"),
  max: MAX_CHARS,
  onSubmit: (text) => sendMessage(text),
  onStop: () => stopAnswers(),
});

const sidebar = new Sidebar({
  app: els.app,
  sidebar: $("#sidebar"),
  list: $("#conversation-list"),
  empty: $("#conversation-empty"),
  toggle: $("#menu-toggle"),
  close: $("#close-sidebar"),
  backdrop: $("#backdrop"),
  dialog: $("#confirm-delete"),
}, {
  open: (id) => {
    if (id === state.currentId) return;
    window.location.hash = `c=${encodeURIComponent(id)}`; // hashchange opens it
  },
  rename: renameConversation,
  remove: removeConversation,
});

// ---- what the page can do now -----------------------------------------------------------------

function refreshUi() {
  const busy = state.sending || state.streams.size > 0;
  composer.setState(state.sending ? "sending" : state.streams.size ? "streaming" : "idle");
  const last = state.records.at(-1);
  for (const record of state.records) updateActions(record, { isLast: record === last, busy });
}

function recordOf(node) {
  const el = node.closest(".message");
  return state.records.find((record) => record.el === el) || null;
}

// ---- answers streaming in -----------------------------------------------------------------------

function attach(record, url) {
  const conversationId = state.currentId;
  state.streams.get(record.id)?.close();
  setStatus(record, "streaming", null);
  const stream = new AnswerStream(url, record.view, {
    render: () => follower.changed(),
    error: (error) => {
      setStatus(record, "streaming", error);
      follower.changed();
    },
    connection: (connection) => setConnection(record, connection),
    end: (status, error) => {
      if (state.streams.get(record.id) === stream) state.streams.delete(record.id);
      setStatus(record, status, error);
      refreshUi();
      follower.changed();
      refreshList();
    },
    recover: async () => {
      try {
        const conversation = await api("GET", urls.conversation(conversationId));
        return conversation.messages.find((m) => m.id === record.id) || null;
      } catch (err) {
        if (err.status === 404) return null;
        throw err;
      }
    },
  });
  state.streams.set(record.id, stream);
  refreshUi();
}

function closeStreams() {
  for (const stream of state.streams.values()) stream.close();
  state.streams.clear();
}

// ---- conversations ------------------------------------------------------------------------------

async function refreshList() {
  const token = ++state.listToken;
  let data;
  try {
    data = await api("GET", urls.conversations);
  } catch (err) {
    showNotice(err.message);
    return;
  }
  if (token !== state.listToken) return;
  state.conversations = data.conversations;
  sidebar.render(data.conversations);
  const current = data.conversations.find((c) => c.id === state.currentId);
  if (current) setTitle(current.title);
}

function resetView(id) {
  state.view += 1;
  closeStreams();
  state.currentId = id;
  state.records = [];
  els.messages.replaceChildren();
  clearNotice();
  sidebar.mark(id);
  setTitle(state.conversations.find((c) => c.id === id)?.title);
  refreshUi();
}

function showNewChat() {
  composer.switchTo(null);
  resetView(null);
}

function renderConversation(conversation) {
  closeStreams();
  setTitle(conversation.title);
  state.records = conversation.messages.map(createMessage);
  els.messages.replaceChildren(...state.records.map((record) => record.el));
  for (const [i, msg] of conversation.messages.entries()) {
    if (msg.role === "assistant" && msg.status === "streaming") attach(state.records[i], msg.stream_url);
  }
  refreshUi();
}

async function openConversation(id) {
  composer.switchTo(id);
  resetView(id);
  const view = state.view;
  els.messages.setAttribute("aria-busy", "true");
  let conversation;
  try {
    conversation = await api("GET", urls.conversation(id));
  } catch (err) {
    if (view !== state.view) return;
    els.messages.removeAttribute("aria-busy");
    showNotice(err.message);
    if (err.status === 404) {
      history.replaceState(null, "", plainUrl());
      composer.switchTo(null);
      state.currentId = null;
      sidebar.mark(null);
      setTitle(null);
    }
    return;
  }
  if (view !== state.view) return;
  renderConversation(conversation);
  els.messages.removeAttribute("aria-busy");
  follower.toBottom();
}

/** Brings the shown conversation up to date after another tab changed it. */
async function syncConversation() {
  const id = state.currentId;
  if (!id || state.sending) return;
  const view = state.view;
  let conversation;
  try {
    conversation = await api("GET", urls.conversation(id));
  } catch {
    return;
  }
  if (view !== state.view || state.sending || state.records.some((r) => r.el.classList.contains("editing"))) return;
  const same = conversation.messages.length === state.records.length
    && conversation.messages.every((m, i) => m.id === state.records[i].id
      && (m.status !== "streaming" || state.streams.has(m.id))
      && (m.status === "streaming" || m.status === state.records[i].status));
  setTitle(conversation.title);
  if (same) return;
  const following = follower.following;
  renderConversation(conversation);
  if (following) follower.toBottom();
  else follower.update();
}

async function renameConversation(id, title) {
  try {
    const conversation = await api("PATCH", urls.conversation(id), { title });
    if (id === state.currentId) setTitle(conversation.title);
  } catch (err) {
    showNotice(err.message);
    throw err;
  }
  broadcast({ type: "list" });
  refreshList();
}

async function removeConversation(id) {
  try {
    await api("DELETE", urls.conversation(id));
  } catch (err) {
    showNotice(err.message);
    throw err;
  }
  if (id === state.currentId) {
    history.pushState(null, "", plainUrl());
    showNewChat();
  }
  composer.forget(id);
  broadcast({ type: "deleted", id });
  refreshList();
}

// ---- sending, stopping, regenerating, editing ----------------------------------------------

/** Runs one request that starts an answer; `apply(result)` shows it if the view is the same. */
async function startAnswer(request, apply) {
  state.sending = true;
  clearNotice();
  refreshUi();
  const view = state.view;
  let ok = false;
  try {
    const result = await request();
    ok = true;
    if (view === state.view) apply(result);
  } catch (err) {
    if (view === state.view) {
      showNotice(err.message);
      if (err.code === "answer_in_progress") setTimeout(syncConversation);
    }
  } finally {
    state.sending = false;
    refreshUi();
  }
  if (ok) {
    broadcast({ type: "conversation", id: state.currentId });
    refreshList();
  }
  return ok;
}

function showAnswer(result, user) {
  const answer = createMessage(result.assistant_message);
  if (user) {
    state.records.push(user);
    els.messages.append(user.el);
  }
  state.records.push(answer);
  els.messages.append(answer.el);
  attach(answer, result.stream_url || result.assistant_message.stream_url);
  follower.toBottom();
}

async function sendMessage(text) {
  if (state.sending || state.streams.size) return;
  const length = countChars(text);
  if (length > MAX_CHARS) {
    showNotice(`Your message is ${length} characters long; the limit is ${MAX_CHARS}.`);
    return;
  }
  let id = state.currentId;
  await startAnswer(async () => {
    if (!id) {
      const view = state.view;
      id = (await api("POST", urls.conversations, {})).id;
      if (view === state.view) {
        state.currentId = id;
        composer.adopt(id);
        history.replaceState(null, "", `${plainUrl()}#c=${encodeURIComponent(id)}`);
        sidebar.mark(id);
        broadcast({ type: "list" });
      }
    }
    const result = await api("POST", urls.messages(id), { content: text });
    composer.sent(text, id);
    return result;
  }, (result) => {
    if (state.currentId === id) showAnswer(result, createMessage(result.user_message));
  });
}

async function stopAnswers() {
  for (const id of [...state.streams.keys()]) {
    try {
      await api("POST", urls.stop(id), {});
    } catch (err) {
      showNotice(err.message);
    }
  }
  els.prompt.focus();
}

async function regenerate(record) {
  if (state.sending || state.streams.size) return;
  const ok = await startAnswer(() => api("POST", urls.regenerate(record.id), {}), (result) => {
    const index = state.records.indexOf(record);
    if (index >= 0) state.records.splice(index, 1);
    record.el.remove();
    showAnswer(result, null);
  });
  if (ok) els.prompt.focus();
}

async function editAndResend(record) {
  if (state.sending || state.streams.size) return;
  const text = await editMessage(record);
  if (text === null || !state.records.includes(record)) {
    record.el.querySelector("button[data-action=edit]")?.focus();
    return;
  }
  const ok = await startAnswer(() => api("PATCH", urls.message(record.id), { content: text }), (result) => {
    const index = state.records.indexOf(record);
    for (const later of state.records.splice(index + 1)) {
      state.streams.get(later.id)?.close();
      state.streams.delete(later.id);
      later.el.remove();
    }
    record.text = result.user_message.content;
    record.content.textContent = record.text;
    showAnswer(result, null);
  });
  if (ok) els.prompt.focus();
  else record.el.querySelector("button[data-action=edit]")?.focus();
}

async function copy(button, text) {
  const ok = await copyText(text);
  flashCopied(button, ok);
  announce(ok ? "Copied to the clipboard." : "Could not copy to the clipboard.");
}

// ---- wiring -------------------------------------------------------------------------------

els.messages.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  const record = recordOf(button);
  switch (button.dataset.action) {
    case "copy-code":
      copy(button, button.closest(".code-block").querySelector("pre").textContent);
      break;
    case "copy-answer":
      if (record) copy(button, record.view.text);
      break;
    case "regenerate":
    case "retry":
      if (record) regenerate(record);
      break;
    case "edit":
      if (record) editAndResend(record);
      break;
    default:
  }
});

els.newChat.addEventListener("click", () => {
  sidebar.setDrawer(false);
  if (state.currentId) history.pushState(null, "", plainUrl());
  showNewChat();
  els.prompt.focus();
});

window.addEventListener("hashchange", () => {
  const id = hashId();
  if (id === state.currentId) return;
  if (id) openConversation(id);
  else showNewChat();
});

window.addEventListener("popstate", () => {
  if (!hashId() && state.currentId) showNewChat();
});

window.addEventListener("resize", () => follower.changed());

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  refreshList();
  syncConversation();
});

channel?.addEventListener("message", (event) => {
  const message = event.data || {};
  if (message.type === "deleted" && message.id === state.currentId) {
    history.replaceState(null, "", plainUrl());
    showNewChat();
    showNotice("This conversation was deleted in another tab.");
  } else if (message.type === "conversation" && message.id === state.currentId) {
    syncConversation();
  }
  refreshList();
});

refreshList();
const initialId = hashId();
if (initialId) openConversation(initialId);
else showNewChat();
