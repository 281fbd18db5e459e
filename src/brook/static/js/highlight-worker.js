// Code highlighting, off the page's main thread: highlight.js (its core and the grammars
// Brook registers) lives only in this module worker. The page sends {id, text, language,
// auto} and gets {id, html, language} back; `html` is null when there is nothing to
// highlight. The page sanitizes `html` before it shows it, like everything the model wrote.
import hljs from "../vendor/highlight/common.js";

const AUTODETECT_LIMIT = 5000; // characters; guessing the language of more is too slow

function highlight({ text, language, auto }) {
  if (language && hljs.getLanguage(language)) {
    return { html: hljs.highlight(text, { language, ignoreIllegals: true }).value, language };
  }
  if (!language && auto && text.length <= AUTODETECT_LIMIT) {
    const guess = hljs.highlightAuto(text);
    if (guess.language && guess.relevance >= 5) return { html: guess.value, language: guess.language };
  }
  return { html: null, language: "" };
}

self.addEventListener("message", ({ data }) => {
  let result = { html: null, language: "" };
  try {
    result = highlight(data);
  } catch {
    // A grammar that fails on some input: the code stays plain text.
  }
  self.postMessage({ id: data.id, ...result });
});
