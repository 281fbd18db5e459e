// Export and import (api/transfer.py): the conversation header's Export menu (the open
// conversation as Markdown or JSON) and the sidebar's "Export all" and "Import". Downloads
// are plain links to the API, which names the file; an import sends the chosen file as it
// is, then shows what it made in the list, or the server's reason for refusing it.
import { api } from "./api.js";
import { refreshList } from "./refresh.js";
import { broadcast, clearNotice, els, showNotice, state } from "./state.js";

const enc = encodeURIComponent;
const IMPORT_URL = "/api/conversations/import";
const exportUrl = (id, format) => `/api/conversations/${enc(id)}/export?format=${format}`;
const MAX_IMPORT_BYTES = 20 * 1024 * 1024; // api/transfer.py's: a larger file is refused
const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

/** The Export menu button (WAI-ARIA's menu button): Enter, Space or the arrows open it on
 * its first or last item, the arrows move, Escape closes it and gives the focus back. */
export class ExportMenu {
  constructor({ menu, toggle, list }) {
    Object.assign(this, { menu, toggle, list });
    this.items = [...list.querySelectorAll('[role="menuitem"]')];
    toggle.addEventListener("click", () => (this.isOpen() ? this.close(true) : this.open(0)));
    toggle.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.open(event.key === "ArrowDown" ? 0 : this.items.length - 1);
      }
    });
    list.addEventListener("keydown", (event) => this.onKey(event));
    // The download starts from the click; the menu closes after it.
    list.addEventListener("click", (event) => {
      if (event.target.closest('[role="menuitem"]')) setTimeout(() => this.close(true));
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen() && !menu.contains(event.target)) this.close(false);
    });
    menu.addEventListener("focusout", (event) => {
      if (this.isOpen() && event.relatedTarget && !menu.contains(event.relatedTarget)) {
        this.close(false);
      }
    });
    // Shown while a conversation is open: every change of view sets the title (state.js).
    new MutationObserver(() => this.sync()).observe(els.title,
      { childList: true, characterData: true, subtree: true });
    this.sync();
  }

  isOpen() {
    return !this.list.hidden;
  }

  sync() {
    const id = state.currentId;
    this.menu.hidden = !id;
    if (!id) {
      this.close(false);
      return;
    }
    for (const item of this.items) item.href = exportUrl(id, item.dataset.format);
  }

  open(index) {
    this.sync();
    if (this.menu.hidden) return;
    this.list.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.items[index]?.focus();
  }

  close(refocus) {
    if (!this.isOpen()) return;
    this.list.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    if (refocus) this.toggle.focus();
  }

  onKey(event) {
    const at = this.items.indexOf(document.activeElement);
    const last = this.items.length - 1;
    const move = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: last }[event.key];
    if (move !== undefined) {
      event.preventDefault();
      this.items[(move + this.items.length) % this.items.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // the drawer stays open
      this.close(true);
    } else if (event.key === "Tab") {
      this.close(false);
    } else if (event.key === " ") {
      event.preventDefault();
      document.activeElement.click();
    }
  }
}

/** "Import": a file chosen behind the button, sent as it is. */
export class Importer {
  constructor({ button, input, status }) {
    Object.assign(this, { button, input, status });
    this.busy = false;
    button.addEventListener("click", () => {
      if (!this.busy) input.click();
    });
    input.addEventListener("change", () => {
      const [file] = input.files;
      input.value = ""; // the same file can be chosen again
      if (file) this.send(file);
    });
  }

  async send(file) {
    clearNotice();
    if (file.size > MAX_IMPORT_BYTES) {
      this.say("");
      showNotice(`Could not import “${file.name}”: it is larger than 20 MB, the most Brook `
        + "imports at once.");
      return;
    }
    this.busy = true;
    this.button.setAttribute("aria-busy", "true");
    this.say(`Importing “${file.name}”…`);
    let result;
    try {
      const sent = fetch(IMPORT_URL, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: file,
      });
      result = await api("POST", IMPORT_URL, null, sent);
    } catch (err) {
      this.say("");
      showNotice(`Could not import “${file.name}”: ${err.message}`);
      return;
    } finally {
      this.busy = false;
      this.button.removeAttribute("aria-busy");
    }
    let text = `Imported ${plural(result.imported, "conversation")} from “${file.name}”.`;
    if (result.skipped) text += ` ${plural(result.skipped, "conversation")} had nothing to import.`;
    this.say(text);
    broadcast({ type: "list" });
    await refreshList();
  }

  say(text) {
    this.status.textContent = text; // a live region: read out as it changes
  }
}
