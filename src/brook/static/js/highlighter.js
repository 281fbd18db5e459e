// The page's side of highlight-worker.js: highlight.js runs in a module worker, so that
// neither loading it nor compiling a grammar on first use nor highlighting a long block
// ever holds up the page. Started on the first request.
let worker = null;
let broken = false;
let nextId = 1;
const waiting = new Map(); // request id -> resolve

function fail() {
  broken = true;
  worker?.terminate();
  for (const resolve of waiting.values()) resolve(null);
  waiting.clear();
}

function start() {
  try {
    worker = new Worker(new URL("./highlight-worker.js", import.meta.url), { type: "module" });
  } catch {
    fail();
    return false;
  }
  worker.addEventListener("message", ({ data }) => {
    const resolve = waiting.get(data.id);
    waiting.delete(data.id);
    resolve?.(data.html === null ? null : data);
  });
  worker.addEventListener("error", fail); // it could not load: code stays plain text
  return true;
}

/** Highlights `text` as `language` (or guesses it, with `auto`, when there is none);
 * resolves to {html, language} (html not yet sanitized), or null for plain text. */
export function highlight(text, language, auto = false) {
  if (broken || (!worker && !start())) return Promise.resolve(null);
  const id = nextId;
  nextId += 1;
  return new Promise((resolve) => {
    waiting.set(id, resolve);
    worker.postMessage({ id, text, language, auto });
  });
}
