// The JSON API: every call sends and expects JSON; an error becomes an ApiError carrying
// the server's plain-words message (and its Retry-After, in seconds, if it sent one).

export class ApiError extends Error {
  constructor(message, status = 0, code = "error", retryAfter = null, detail = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.detail = detail; // the whole error object (a limit's `limit` and `resets_at`)
  }
}

/** Retry-After in seconds (it may also be an HTTP date), or null. */
function retryAfterOf(response) {
  const value = response.headers?.get("Retry-After");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

/** Sends a request, or, with `started`, reads the response to one already sent with the
 * same headers (early.js). */
export async function api(method, url, body, started = null) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET" && method !== "DELETE") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await (started || fetch(url, options));
  } catch {
    throw new ApiError("Could not reach the server. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // A body that is not JSON is only expected with an error: handled below.
  }
  if (!response.ok || data === null) {
    const error = data && data.error;
    throw new ApiError(
      (error && error.message) || `The server could not handle the request (HTTP ${response.status}).`,
      response.status,
      (error && error.code) || "http_error",
      retryAfterOf(response),
      error || {},
    );
  }
  return data;
}

const enc = encodeURIComponent;

export const urls = {
  conversations: "/api/conversations",
  conversation: (id) => `/api/conversations/${enc(id)}`,
  messages: (id) => `/api/conversations/${enc(id)}/messages`,
  message: (id) => `/api/messages/${enc(id)}`,
  regenerate: (id) => `/api/messages/${enc(id)}/regenerate`,
  stop: (id) => `/api/messages/${enc(id)}/stop`,
  usage: "/api/usage",
  models: "/api/models",
};

/** What to say when a request was over one of the owner's limits (a 429): the server's
 * words, and when they can go on, in local time. */
export function limitText(error) {
  const resets = error.detail && error.detail.resets_at ? new Date(error.detail.resets_at) : null;
  if (!resets || Number.isNaN(resets.getTime())) return error.message;
  const sameDay = resets.toDateString() === new Date().toDateString();
  const when = resets.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `${error.message} You can go on ${sameDay ? "at" : "tomorrow at"} ${when}.`;
}
