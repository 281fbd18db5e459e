// Answers: sending a message, stopping, regenerating, editing and resending, and following
// an answer's stream into its message.
import { api, urls } from "./api.js";
import { copyText, flashCopied } from "./clipboard.js";
import { countChars } from "./composer.js";
import { createMessage, editMessage, setConnection, setStatus } from "./messages.js";
import { AnswerStream } from "./stream.js";
import { refreshList, refreshUi, syncConversation } from "./conversations.js";
import {
  announce, broadcast, clearNotice, els, MAX_CHARS, plainUrl, showNotice, state, ui,
} from "./state.js";

export function attach(record, url) {
  const conversationId = state.currentId;
  state.streams.get(record.id)?.close();
  setStatus(record, "streaming", null);
  const stream = new AnswerStream(url, record.view, {
    render: () => ui.follower.changed(),
    error: (error) => {
      setStatus(record, "streaming", error);
      ui.follower.changed();
    },
    connection: (connection) => setConnection(record, connection),
    end: (status, error) => {
      if (state.streams.get(record.id) === stream) state.streams.delete(record.id);
      setStatus(record, status, error);
      refreshUi();
      ui.follower.changed();
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

/** Runs one request that starts an answer; `apply(result)` shows it if the view is the same. */
export async function startAnswer(request, apply) {
  ui.backlog.yield(); // what is sent and answered now must be heard
  state.sending = true;
  clearNotice();
  refreshUi();
  const view = state.view;
  let result = null;
  try {
    result = await request();
    if (view === state.view) apply(result);
  } catch (err) {
    if (view === state.view) {
      showNotice(err.message);
      if (err.status === 409) setTimeout(syncConversation); // another tab got there first
      refreshList(); // a conversation may have been made before the failure
    }
  } finally {
    state.sending = false;
    refreshUi();
  }
  if (!result) return false;
  broadcast({ type: "conversation", id: result.assistant_message.conversation_id });
  refreshList();
  return true;
}

export function showAnswer(result, user) {
  const answer = createMessage(result.assistant_message);
  if (user) {
    state.records.push(user);
    els.messages.append(user.el);
  }
  state.records.push(answer);
  els.messages.append(answer.el);
  attach(answer, result.stream_url || result.assistant_message.stream_url);
  ui.follower.toBottom();
}

export async function sendMessage(text) {
  if (state.sending || state.streams.size) return;
  const length = countChars(text);
  if (length > MAX_CHARS) {
    showNotice(`Your message is ${length} characters long; the limit is ${MAX_CHARS}.`);
    return;
  }
  let id = state.currentId;
  await startAnswer(async () => {
    // A browser's first API request gets it its owner cookie: two first requests at once
    // would get two owners, so nothing is written before the first list has loaded.
    await state.ready;
    if (!id) {
      const view = state.view;
      id = (await api("POST", urls.conversations, {})).id;
      if (view === state.view) {
        state.currentId = id;
        ui.composer.adopt(id);
        history.replaceState(null, "", `${plainUrl()}#c=${encodeURIComponent(id)}`);
        ui.sidebar.mark(id);
        broadcast({ type: "list" });
      }
    }
    const result = await api("POST", urls.messages(id), { content: text });
    ui.composer.sent(text, id);
    return result;
  }, (result) => {
    if (state.currentId === id) showAnswer(result, createMessage(result.user_message));
  });
}

export async function stopAnswers() {
  for (const id of [...state.streams.keys()]) {
    try {
      await api("POST", urls.stop(id), {});
    } catch (err) {
      showNotice(err.message);
    }
  }
  els.prompt.focus();
}

export async function regenerate(record) {
  if (state.sending || state.streams.size) return;
  const ok = await startAnswer(() => api("POST", urls.regenerate(record.id), {}), (result) => {
    const index = state.records.indexOf(record);
    if (index >= 0) state.records.splice(index, 1);
    record.el.remove();
    showAnswer(result, null);
  });
  if (ok) els.prompt.focus();
}

export async function editAndResend(record) {
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

export async function copy(button, text) {
  const ok = await copyText(text);
  flashCopied(button, ok);
  announce(ok ? "Copied to the clipboard." : "Could not copy to the clipboard.");
}
