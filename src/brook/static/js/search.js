// The search box at the top of the sidebar (Ctrl/Cmd+K): results as you type, in place of
// the conversation list, and a result opens its conversation at the matched message.
// ARIA's combobox with a listbox: the focus stays in the box, the arrows move through the
// results (aria-activedescendant), Enter opens one, Escape clears the box. The server sends
// each snippet as plain text with the matched words' offsets: they are marked here, as text
// nodes and <mark> elements, never parsed as HTML.
import { api } from "./api.js";
import { openConversation } from "./conversations.js";
import { announce, APP_NAME, els, state, ui } from "./state.js";
import { titleOf } from "./sidebar.js";

const DEBOUNCE_MS = 200;
const LIMIT = 20;
const HIGHLIGHT_MS = 2500;
const enc = encodeURIComponent;

/** `text` with the code point ranges of `highlights` ([{start, end}], in order) marked. */
export function marked(text, highlights) {
  const chars = Array.from(text); // the server counts code points, not UTF-16 units
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const { start, end } of highlights || []) {
    if (start < at || end <= start || end > chars.length) continue;
    if (start > at) fragment.append(chars.slice(at, start).join(""));
    const mark = document.createElement("mark");
    mark.textContent = chars.slice(start, end).join("");
    fragment.append(mark);
    at = end;
  }
  if (at < chars.length) fragment.append(chars.slice(at).join(""));
  return fragment;
}

/** Scrolls the log to a message of the conversation shown, marks it for a moment and gives
 * it the focus (so a screen reader reads it); false if it is not there. */
export function revealMessage(id) {
  const record = state.records.find((r) => r.id === id);
  if (!record) return false;
  if (record.pending) ui.backlog.render(record); // its final height, before scrolling to it
  const { el } = record;
  el.classList.remove("search-hit");
  void el.offsetWidth; // restart the animation when the same message is chosen again
  el.classList.add("search-hit");
  clearTimeout(el.searchHitTimer);
  el.searchHitTimer = setTimeout(() => el.classList.remove("search-hit"), HIGHLIGHT_MS);
  el.tabIndex = -1;
  el.addEventListener("blur", () => el.removeAttribute("tabindex"), { once: true });
  const center = () => el.scrollIntoView({ block: "center" });
  center();
  // Messages far from the view are laid out only once near it (content-visibility): once
  // they are, center it again.
  requestAnimationFrame(() => requestAnimationFrame(center));
  el.focus({ preventScroll: true });
  return true;
}

export class Search {
  constructor({ input, panel, list, status, history, key }) {
    Object.assign(this, { input, panel, list, status, history });
    if (key && /Mac|iPhone|iPad/.test(navigator.platform)) key.textContent = "⌘K";
    this.results = [];
    this.active = -1;
    this.timer = 0;
    this.token = 0;
    this.query = "";
    input.addEventListener("input", () => this.changed());
    input.addEventListener("keydown", (event) => this.onKey(event));
    list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.choose(Number(option.dataset.index));
    });
    document.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey
          && event.key.toLowerCase() === "k") {
        event.preventDefault();
        this.focus();
      }
    });
  }

  focus() {
    if (ui.sidebar.narrow.matches && !ui.sidebar.isOpen()) ui.sidebar.setDrawer(true);
    this.input.focus();
    this.input.select();
  }

  changed() {
    clearTimeout(this.timer);
    const query = this.input.value.trim();
    if (!query) {
      this.close();
      return;
    }
    this.timer = setTimeout(() => this.run(query), DEBOUNCE_MS);
  }

  async run(query) {
    const token = ++this.token;
    let data;
    try {
      data = await api("GET", `/api/search?q=${enc(query)}&limit=${LIMIT}`);
    } catch (err) {
      if (token !== this.token) return;
      this.show([], err.message);
      return;
    }
    if (token !== this.token || !this.input.value.trim()) return;
    this.query = query;
    const count = data.results.length;
    this.show(data.results, count === 0 ? `No matches for “${query}”.`
      : `${count === LIMIT ? "The best " : ""}${count} ${count === 1 ? "match" : "matches"}.`);
  }

  show(results, message) {
    this.results = results;
    this.active = -1;
    this.input.removeAttribute("aria-activedescendant");
    this.list.replaceChildren(...results.map((hit, i) => this.option(hit, i)));
    this.list.hidden = results.length === 0;
    this.status.textContent = message;
    announce(message); // the status above is no live region: it appears with the results
    this.panel.hidden = false;
    this.history.hidden = true;
    this.input.setAttribute("aria-expanded", String(results.length > 0));
  }

  option(hit, index) {
    const li = document.createElement("li");
    li.id = `search-result-${index}`;
    li.className = "search-result";
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    li.dataset.index = String(index);
    const title = document.createElement("span");
    title.className = "search-result-title";
    const snippet = document.createElement("span");
    snippet.className = "search-result-snippet";
    const who = document.createElement("span");
    who.className = "search-result-role";
    if (hit.message_id === null) {
      title.append(marked(hit.snippet, hit.highlights));
      who.textContent = "Title";
      snippet.append(who);
    } else {
      title.textContent = titleOf(hit);
      who.textContent = `${hit.role === "user" ? "You" : APP_NAME}: `;
      snippet.append(who, marked(hit.snippet, hit.highlights));
    }
    li.append(title, snippet);
    return li;
  }

  close() {
    this.token += 1; // a search under way is no longer wanted
    this.results = [];
    this.active = -1;
    this.list.replaceChildren();
    this.status.textContent = "";
    this.panel.hidden = true;
    this.history.hidden = false;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  clear() {
    clearTimeout(this.timer);
    this.input.value = "";
    this.close();
  }

  setActive(index) {
    const options = this.list.children;
    if (!options.length) return;
    this.active = (index + options.length) % options.length;
    for (const [i, option] of [...options].entries()) {
      option.setAttribute("aria-selected", String(i === this.active));
    }
    const option = options[this.active];
    this.input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  onKey(event) {
    if (event.isComposing) return;
    switch (event.key) {
      case "ArrowDown":
      case "ArrowUp":
        if (!this.results.length) return;
        event.preventDefault();
        this.setActive(this.active < 0 && event.key === "ArrowUp" ? -1
          : this.active + (event.key === "ArrowDown" ? 1 : -1));
        break;
      case "Enter":
        event.preventDefault();
        if (this.timer && this.input.value.trim() !== this.query) {
          // Typed faster than the debounce: search now, then open the best match.
          clearTimeout(this.timer);
          this.run(this.input.value.trim()).then(() => this.choose(0));
        } else if (this.results.length) {
          this.choose(Math.max(this.active, 0));
        }
        break;
      case "Escape":
        if (!this.input.value) return; // the drawer's Escape closes it
        event.preventDefault();
        this.clear();
        break;
      default:
    }
  }

  /** Opens a result's conversation (unless shown) at its message. */
  async choose(index) {
    const hit = this.results[index];
    if (!hit) return;
    this.setActive(index);
    const drawer = ui.sidebar.isOpen();
    ui.sidebar.setDrawer(false);
    if (hit.conversation_id !== state.currentId) {
      history.pushState(null, "", `#c=${enc(hit.conversation_id)}`);
      await openConversation(hit.conversation_id);
      if (hit.conversation_id !== state.currentId) return; // gone, or another was opened
    }
    if (hit.message_id && revealMessage(hit.message_id)) return;
    if (drawer) els.prompt.focus(); // the list is gone: the focus goes to the conversation
  }
}
