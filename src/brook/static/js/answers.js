// Answers: sending a message, stopping, regenerating, editing and resending (follow.js
// follows each answer's stream into its message).
import { api, limitText, urls } from "./api.js";
import { isBusy } from "./busy.js";
import { copyText, flashCopied } from "./clipboard.js";
import { countChars } from "./composer.js";
import { syncConversation } from "./conversations.js";
import { attach } from "./follow.js";
import { createMessage, editMessage } from "./messages.js";
import { refreshList, refreshUi } from "./refresh.js";
import { draftSettings } from "./settings.js";
import {
  announce, broadcast, clearNotice, els, MAX_CHARS, plainUrl, showNotice, state, ui,
} from "./state.js";

/** Runs one request that starts an answer; `apply(result)` shows it if the view is the same.
 * Refused because Brook is busy (nothing was stored), it is sent again on its own (busy.js).
 * Resolves to "sent", "failed", "cancelled" (by the user), "gave-up" (still busy after
 * several tries) or "dropped" (the page moved on, or sent something else instead). */
export async function startAnswer(kind, request, apply) {
  ui.backlog.yield(); // what is sent and answered now must be heard
  clearNotice();
  const view = state.view;
  for (let refusals = 1; ; refusals += 1) {
    state.sending = true;
    refreshUi();
    let result = null;
    let error = null;
    try {
      result = await request();
    } catch (err) {
      error = err;
    }
    state.sending = false;
    if (!error) {
      ui.busy.done();
      if (view === state.view) apply(result);
      refreshUi();
      broadcast({ type: "conversation", id: result.assistant_message.conversation_id });
      refreshList();
      return "sent";
    }
    if (view !== state.view) {
      refreshUi();
      return "dropped";
    }
    if (!isBusy(error)) {
      ui.busy.done();
      refreshUi();
      // Over a limit (429): nothing was sent, and the message stays in the box for later.
      showNotice(error.status === 429 ? limitText(error) : error.message);
      if (error.status === 409) setTimeout(syncConversation); // another tab got there first
      refreshList(); // a conversation may have been made before the failure
      return "failed";
    }
    if (refusals === 1) refreshList();
    const waited = ui.busy.wait(kind, error.retryAfter, refusals);
    refreshUi();
    const outcome = await waited;
    if (outcome === "send" && view === state.view) continue;
    if (outcome === "user" || outcome === "gave-up") {
      ui.busy.done();
      refreshUi();
      if (outcome === "gave-up") showNotice(ui.busy.giveUpText(kind));
      return outcome === "user" ? "cancelled" : outcome;
    }
    return "dropped";
  }
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
  if (state.sending || state.streams.size || (ui.busy.kind && ui.busy.kind !== "message")) return;
  const length = countChars(text);
  if (length > MAX_CHARS) {
    showNotice(`Your message is ${length} characters long; the limit is ${MAX_CHARS}.`);
    return;
  }
  ui.busy.done(); // sent again by hand: not on its own any more
  let id = state.currentId;
  await startAnswer("message", async () => {
    // A browser's first API request gets it its owner cookie: two first requests at once
    // would get two owners, so nothing is written before the first list has loaded.
    await state.ready;
    if (!id) {
      const view = state.view;
      id = (await api("POST", urls.conversations, draftSettings())).id;
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
  if (state.sending || state.streams.size || ui.busy.kind) return;
  const request = () => api("POST", urls.regenerate(record.id), {});
  const outcome = await startAnswer("regenerate", request, (result) => {
    const index = state.records.indexOf(record);
    if (index >= 0) state.records.splice(index, 1);
    record.el.remove();
    showAnswer(result, null);
  });
  if (outcome === "sent") els.prompt.focus();
}

/** Edits a user message (the box holds `draft`) and sends it, answered anew. */
export async function editAndResend(record, draft = record.text) {
  if (state.sending || state.streams.size || ui.busy.kind) return;
  const text = await editMessage(record, draft);
  if (text === null || !state.records.includes(record)) {
    record.el.querySelector("button[data-action=edit]")?.focus();
    return;
  }
  const request = () => api("PATCH", urls.message(record.id), { content: text });
  const outcome = await startAnswer("edit", request, (result) => {
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
  if (outcome === "sent") els.prompt.focus();
  else if (outcome === "failed") record.el.querySelector("button[data-action=edit]")?.focus();
  else if (outcome !== "dropped" && state.records.includes(record)) editAndResend(record, text);
}

export async function copy(button, text) {
  const ok = await copyText(text);
  flashCopied(button, ok);
  announce(ok ? "Copied to the clipboard." : "Could not copy to the clipboard.");
}
