// The page's first API requests, started as soon as this small module arrives (the template
// loads it first, with `async` and a high fetch priority, and it imports nothing), while the
// other modules still load. conversations.js takes the responses from here, once each, and
// reads them with api.js.
const start = (url) => {
  const response = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  response.catch(() => {}); // handled by whoever takes it; never an unhandled rejection
  return response;
};

const hashId = new URLSearchParams(window.location.hash.slice(1)).get("c");
let list = start("/api/conversations");
let conversation = hashId
  ? { id: hashId, response: start(`/api/conversations/${encodeURIComponent(hashId)}`) }
  : null;

/** The response to the conversation list requested at start-up, once; null afterwards. */
export function takeList() {
  const taken = list;
  list = null;
  return taken;
}

/** The response for conversation `id` requested at start-up, once; null if another or taken. */
export function takeConversation(id) {
  if (!conversation || conversation.id !== id) return null;
  const taken = conversation.response;
  conversation = null;
  return taken;
}
