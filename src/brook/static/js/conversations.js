// The conversation shown: opening, refreshing after another tab changed it, renaming and
// deleting (refresh.js reloads the list of conversations).
import { api, urls } from "./api.js";
import { attach } from "./follow.js";
import { createMessage } from "./messages.js";
import { refreshList, refreshUi } from "./refresh.js";
import {
  broadcast, clearNotice, els, plainUrl, setTitle, showNotice, state, ui,
} from "./state.js";

// The conversation response early.js started before the modules loaded (none if it did not run).
const { takeConversation } = window.brookEarly || { takeConversation: () => null };

export function recordOf(node) {
  const el = node.closest(".message");
  return state.records.find((record) => record.el === el) || null;
}

export function closeStreams() {
  for (const stream of state.streams.values()) stream.close();
  state.streams.clear();
}

export function resetView(id) {
  state.view += 1;
  ui.busy.done(); // nothing is sent again on its own into another conversation
  closeStreams();
  ui.backlog.stop();
  state.currentId = id;
  state.records = [];
  els.messages.replaceChildren();
  clearNotice();
  ui.sidebar.mark(id);
  setTitle(state.conversations.find((c) => c.id === id)?.title);
  ui.settings?.show();
  refreshUi();
}

export function showNewChat() {
  ui.composer.switchTo(null);
  resetView(null);
  ui.settings?.reset();
}

/** Shows a conversation's messages; long ones are rendered in the background (backlog.js). */
export function renderConversation(conversation) {
  closeStreams();
  setTitle(conversation.title);
  state.records = conversation.messages.map((msg) => createMessage(msg, { defer: true }));
  els.messages.replaceChildren(...state.records.map((record) => record.el));
  ui.backlog.start(state.records);
  for (const [i, msg] of conversation.messages.entries()) {
    if (msg.role === "assistant" && msg.status === "streaming") attach(state.records[i], msg.stream_url);
  }
  refreshUi();
}

export async function openConversation(id) {
  ui.composer.switchTo(id);
  resetView(id);
  const view = state.view;
  els.messages.setAttribute("aria-busy", "true");
  let conversation;
  try {
    conversation = await api("GET", urls.conversation(id), null, takeConversation(id));
  } catch (err) {
    if (view !== state.view) return;
    els.messages.removeAttribute("aria-busy");
    showNotice(err.message);
    if (err.status === 404) {
      history.replaceState(null, "", plainUrl());
      ui.composer.switchTo(null);
      state.currentId = null;
      ui.sidebar.mark(null);
      setTitle(null);
    }
    return;
  }
  if (view !== state.view) return;
  renderConversation(conversation); // the backlog says when the log is no longer busy
  ui.follower.toBottom();
}

/** Brings the shown conversation up to date after another tab changed it. */
export async function syncConversation() {
  const id = state.currentId;
  if (!id || state.sending || ui.busy.kind) return;
  const view = state.view;
  let conversation;
  try {
    conversation = await api("GET", urls.conversation(id));
  } catch {
    return;
  }
  if (view !== state.view || state.sending || ui.busy.kind
      || state.records.some((r) => r.el.classList.contains("editing"))) return;
  const same = conversation.messages.length === state.records.length
    && conversation.messages.every((m, i) => m.id === state.records[i].id
      && (m.status !== "streaming" || state.streams.has(m.id))
      && (m.status === "streaming" || m.status === state.records[i].status));
  setTitle(conversation.title);
  if (same) return;
  const following = ui.follower.following;
  renderConversation(conversation);
  if (following) ui.follower.toBottom();
  else ui.follower.update();
}

export async function renameConversation(id, title) {
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

export async function removeConversation(id) {
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
  ui.composer.forget(id);
  broadcast({ type: "deleted", id });
  refreshList();
}
