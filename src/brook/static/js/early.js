// The page's first API requests (the conversation list, and the conversation the address
// names), started the moment this small file arrives and their JSON parsed as soon as it
// arrives, while the page's modules still load. It is the page's one classic script, loaded
// first and parser-blocking: the browser runs such a script as soon as it is fetched, where
// it may hold an async module back until after the first paint. refresh.js (the list) and
// conversations.js take the responses from window.brookEarly, once each, and read them with
// api.js.
(() => {
  const start = (url) => {
    const response = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(async (received) => {
        let data = null;
        let failed = false;
        try {
          data = await received.json();
        } catch {
          failed = true; // not JSON: api.js says what went wrong
        }
        // As much of a Response as api.js reads.
        const { status, ok } = received;
        return { status, ok, json: async () => { if (failed) throw new SyntaxError("not JSON"); return data; } };
      });
    response.catch(() => {}); // handled by whoever takes it; never an unhandled rejection
    return response;
  };

  const hashId = new URLSearchParams(window.location.hash.slice(1)).get("c");
  let list = start("/api/conversations");
  let conversation = hashId
    ? { id: hashId, response: start(`/api/conversations/${encodeURIComponent(hashId)}`) }
    : null;

  window.brookEarly = {
    /** The response to the conversation list requested at start-up, once; null afterwards. */
    takeList() {
      const taken = list;
      list = null;
      return taken;
    },
    /** The response for conversation `id` requested at start-up, once; null if another or taken. */
    takeConversation(id) {
      if (!conversation || conversation.id !== id) return null;
      const taken = conversation.response;
      conversation = null;
      return taken;
    },
  };
})();
