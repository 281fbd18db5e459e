// The page's shared state and small view helpers, used by the other modules.
const $ = (selector) => document.querySelector(selector);

export const els = {
  app: $("#app"),
  title: $("#conversation-title"),
  messages: $("#messages"),
  notice: $("#notice"),
  prompt: $("#prompt"),
  announcer: $("#announcer"),
  newChat: $("#new-chat"),
};
export const APP_NAME = document.body.dataset.appName || "Brook";
export const MAX_CHARS = Number(document.body.dataset.maxMessageChars) || Infinity;

export const state = {
  currentId: null, // the conversation shown, or null for a new chat
  view: 0, // bumped whenever the shown conversation changes
  records: [], // the messages shown, in order (see messages.js)
  streams: new Map(), // answer id -> AnswerStream, for the conversation shown
  sending: false, // a send, regenerate or edit request is on its way
  conversations: [],
  listToken: 0,
  ready: null, // the first list load: it gets this browser its owner cookie
};

/** The page's parts (composer, follower, sidebar), set up by main.js. */
export const ui = {};

const channel = "BroadcastChannel" in window ? new BroadcastChannel("brook") : null;
/** Tells the page's other tabs what changed ({type, id}). */
export const broadcast = (message) => channel?.postMessage(message);
export const onBroadcast = (listener) => channel?.addEventListener("message", (e) => listener(e.data || {}));

export function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = false;
}

export function clearNotice() {
  els.notice.hidden = true;
  els.notice.textContent = "";
}

export function announce(text) {
  els.announcer.textContent = "";
  setTimeout(() => { els.announcer.textContent = text; }, 50);
}

export function setTitle(title) {
  const text = title || (state.currentId ? "Untitled chat" : "New chat");
  els.title.textContent = text;
  document.title = `${text} · ${APP_NAME}`;
}

export const hashId = () => new URLSearchParams(window.location.hash.slice(1)).get("c");
export const plainUrl = () => window.location.pathname + window.location.search;
