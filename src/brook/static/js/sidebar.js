// The conversation list: newest first, switch, rename in place, delete with a confirm
// dialog; on narrow screens it is a drawer.
import { iconButton } from "./icons.js";

const TITLE_MAX = 200;
export const titleOf = (conversation) => conversation.title || "Untitled chat";

export class Sidebar {
  /** handlers: open(id), closed() after a choice closed the drawer,
   * rename(id, title) -> Promise, remove(id) -> Promise */
  constructor({ app, sidebar, main, list, empty, toggle, close, backdrop, dialog }, handlers) {
    Object.assign(this, { app, sidebar, main, list, empty, toggle, backdrop, dialog, handlers });
    this.currentId = null;
    this.narrow = window.matchMedia("(max-width: 760px)");
    this.narrow.addEventListener("change", () => this.setDrawer(false));
    toggle.addEventListener("click", () => this.setDrawer(!this.isOpen()));
    close.addEventListener("click", () => this.setDrawer(false, true));
    backdrop.addEventListener("click", () => this.setDrawer(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen() && !event.defaultPrevented
          && !document.querySelector("dialog[open]")) {
        this.setDrawer(false, true);
      }
    });
    list.addEventListener("click", (event) => this.onClick(event));
    for (const button of dialog.querySelectorAll("button[value]")) {
      button.addEventListener("click", () => dialog.close(button.value));
    }
    this.setDrawer(false);
  }

  // ---- the drawer ----

  isOpen() {
    return this.app.dataset.drawer === "open";
  }

  setDrawer(open, returnFocus = false) {
    const narrow = this.narrow.matches;
    const wasOpen = this.isOpen();
    open = open && narrow;
    this.app.dataset.drawer = open ? "open" : "closed";
    this.toggle.setAttribute("aria-expanded", String(open));
    this.backdrop.hidden = !open;
    this.sidebar.inert = narrow && !open;
    this.main.inert = open; // the open drawer is modal: the keyboard stays in it
    if (open) this.sidebar.querySelector("#new-chat").focus();
    else if (wasOpen && returnFocus) this.toggle.focus();
  }

  // ---- the list ----

  render(conversations) {
    const focused = document.activeElement;
    const keep = new Map();
    for (const li of this.list.children) keep.set(li.dataset.id, li);
    const items = conversations.map((conversation) => {
      const li = keep.get(conversation.id) || this.item(conversation.id);
      keep.delete(conversation.id);
      if (!li.querySelector(".rename-input")) this.setTitle(li, titleOf(conversation));
      return li;
    });
    for (const li of keep.values()) li.remove();
    let ref = this.list.firstElementChild;
    for (const li of items) {
      if (li === ref) ref = ref.nextElementSibling;
      else this.list.insertBefore(li, ref);
    }
    this.empty.hidden = items.length > 0;
    this.mark(this.currentId);
    if (focused && focused !== document.activeElement && this.list.contains(focused)) focused.focus();
  }

  item(id) {
    const li = document.createElement("li");
    li.className = "conversation-item";
    li.dataset.id = id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "conversation";
    open.dataset.id = id;
    const rename = iconButton("pencil", "Rename", { className: "item-action rename", labelHidden: true });
    const remove = iconButton("trash", "Delete", { className: "item-action delete", labelHidden: true });
    li.append(open, rename, remove);
    return li;
  }

  setTitle(li, title) {
    li.dataset.title = title;
    const open = li.querySelector("button.conversation");
    open.textContent = title;
    open.title = title;
    const rename = li.querySelector("button.rename");
    const remove = li.querySelector("button.delete");
    rename.setAttribute("aria-label", `Rename “${title}”`);
    remove.setAttribute("aria-label", `Delete “${title}”`);
  }

  mark(id) {
    this.currentId = id;
    for (const li of this.list.children) {
      const button = li.querySelector("button.conversation");
      if (li.dataset.id === id) {
        li.classList.add("current");
        button.setAttribute("aria-current", "page");
      } else {
        li.classList.remove("current");
        button.removeAttribute("aria-current");
      }
    }
  }

  itemFor(id) {
    return [...this.list.children].find((li) => li.dataset.id === id) || null;
  }

  onClick(event) {
    const button = event.target.closest("button");
    const li = event.target.closest("li.conversation-item");
    if (!button || !li) return;
    if (button.classList.contains("conversation")) {
      this.handlers.open(li.dataset.id);
      if (this.isOpen()) {
        this.setDrawer(false);
        this.handlers.closed(); // the list is gone: the focus goes to the conversation
      }
    } else if (button.classList.contains("rename")) {
      this.startRename(li);
    } else if (button.classList.contains("delete")) {
      this.confirmDelete(li);
    }
  }

  // ---- rename in place ----

  startRename(li) {
    if (li.querySelector(".rename-input")) return;
    const open = li.querySelector("button.conversation");
    const old = li.dataset.title;
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.maxLength = TITLE_MAX;
    input.value = old;
    input.setAttribute("aria-label", "Conversation title");
    open.hidden = true;
    li.classList.add("renaming");
    open.after(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save, refocus) => {
      if (finished) return;
      finished = true;
      const title = input.value.trim();
      input.remove();
      li.classList.remove("renaming");
      open.hidden = false;
      if (save && title && title !== old) {
        this.setTitle(li, title);
        try {
          await this.handlers.rename(li.dataset.id, title);
        } catch {
          this.setTitle(li, old);
        }
      }
      if (refocus) li.querySelector("button.conversation").focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true, true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false, true);
      }
    });
    input.addEventListener("blur", () => finish(true, false));
  }

  // ---- delete, with a confirm dialog ----

  confirmDelete(li) {
    const { dialog } = this;
    dialog.querySelector("#confirm-text").textContent =
      `“${li.dataset.title}” and all its messages will be deleted. This cannot be undone.`;
    const onClose = async () => {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue !== "delete") {
        li.querySelector("button.delete").focus();
        return;
      }
      const next = li.nextElementSibling || li.previousElementSibling;
      try {
        await this.handlers.remove(li.dataset.id);
      } catch {
        li.querySelector("button.delete")?.focus();
        return;
      }
      li.remove();
      this.empty.hidden = this.list.children.length > 0;
      (next?.querySelector("button.conversation") || document.querySelector("#new-chat")).focus();
    };
    dialog.returnValue = "";
    dialog.addEventListener("close", onClose);
    dialog.showModal();
  }
}
