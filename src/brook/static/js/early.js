// The page's first API requests, started as soon as this small module arrives (the template
// loads it with `async`), while the larger modules (Markdown, highlighting) still load.
// main.js imports this same module instance and takes the answers from here.
import { api, urls } from "./api.js";

const hashId = new URLSearchParams(window.location.hash.slice(1)).get("c");
const settle = (promise) => {
  promise.catch(() => {}); // handled by whoever takes it; never an unhandled rejection
  return promise;
};

let list = settle(api("GET", urls.conversations));
let conversation = hashId ? { id: hashId, request: settle(api("GET", urls.conversation(hashId))) } : null;

/** The conversation list requested at start-up, once; null afterwards. */
export function takeList() {
  const taken = list;
  list = null;
  return taken;
}

/** The conversation `id` requested at start-up, once; null if another or already taken. */
export function takeConversation(id) {
  if (!conversation || conversation.id !== id) return null;
  const taken = conversation.request;
  conversation = null;
  return taken;
}
