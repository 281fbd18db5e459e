// Brook's chat page: sets up the sidebar, the message log and the composer, and wires the
// page's events to conversations.js and answers.js. Plain ES modules, no build step, and no
// import cycles: each module imports only modules below it (tests/test_page_modules.py).
import { Backlog } from "./backlog.js";
import { BusyNotice } from "./busy.js";
import { Composer } from "./composer.js";
import { copy, editAndResend, regenerate, sendMessage, stopAnswers } from "./answers.js";
import {
  openConversation, recordOf, removeConversation, renameConversation, showNewChat,
  syncConversation,
} from "./conversations.js";
import { toggleUsage } from "./messages.js";
import { refreshList } from "./refresh.js";
import { Follower } from "./scroll.js";
import { Settings } from "./settings.js";
import { Search } from "./search.js";
import { Sidebar } from "./sidebar.js";
import {
  els, hashId, MAX_CHARS, onBroadcast, plainUrl, showNotice, state, ui,
} from "./state.js";
import { ExportMenu, Importer } from "./transfer.js";

const $ = (selector) => document.querySelector(selector);

ui.follower = new Follower(els.messages, $("#jump-latest"), () => els.prompt.focus());
ui.backlog = new Backlog(els.messages, () => ui.follower.changed());

ui.busy = new BusyNotice({
  box: $("#busy"),
  text: $("#busy-text"),
  cancel: $("#busy-cancel"),
  status: $("#busy-status"),
  fallback: els.prompt,
});

ui.composer = new Composer({
  form: $("#composer"),
  prompt: els.prompt,
  send: $("#send"),
  stop: $("#stop"),
  counter: $("#char-count"),
  max: MAX_CHARS,
  onSubmit: (text) => sendMessage(text),
  onStop: () => stopAnswers(),
});

ui.sidebar = new Sidebar({
  app: els.app,
  sidebar: $("#sidebar"),
  main: $("main"),
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
  closed: () => els.prompt.focus(),
  rename: renameConversation,
  remove: removeConversation,
});

ui.search = new Search({
  input: $("#search-input"),
  panel: $("#search-panel"),
  list: $("#search-results"),
  status: $("#search-status"),
  history: $("nav.history"),
  key: $(".search-key"),
});

ui.exportMenu = new ExportMenu({
  menu: $("#export-menu"),
  toggle: $("#export-toggle"),
  list: $("#export-options"),
});

ui.importer = new Importer({
  button: $("#import-button"),
  input: $("#import-file"),
  status: $("#import-status"),
});

ui.settings = new Settings();
ui.settings.load();

// The message actions, by delegation: the buttons come and go with the messages.
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
    case "usage":
      if (record) toggleUsage(record, button);
      break;
    default:
  }
});

els.newChat.addEventListener("click", () => {
  ui.sidebar.setDrawer(false);
  if (state.currentId) history.pushState(null, "", plainUrl());
  showNewChat();
  els.prompt.focus();
});

// The address says which conversation is shown (#c=<id>), so Back and reloads work.
window.addEventListener("hashchange", () => {
  const id = hashId();
  if (id === state.currentId) return;
  if (id) openConversation(id);
  else showNewChat();
});

window.addEventListener("popstate", () => {
  if (!hashId() && state.currentId) showNewChat();
});

// Changing a message that waits to be sent again means it is not to be sent as it was.
els.prompt.addEventListener("input", () => {
  if (ui.busy.waiting === "message") ui.busy.cancel("user");
});

window.addEventListener("resize", () => ui.follower.changed());

// Another tab, or this one while hidden, may have changed things.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  refreshList();
  syncConversation();
});

onBroadcast((message) => {
  if (message.type === "deleted" && message.id === state.currentId) {
    history.replaceState(null, "", plainUrl());
    showNewChat();
    showNotice("This conversation was deleted in another tab.");
  } else if (message.type === "conversation" && message.id === state.currentId) {
    syncConversation();
  }
  refreshList();
});

state.ready = refreshList();
const initialId = hashId();
if (initialId) openConversation(initialId);
else showNewChat();
