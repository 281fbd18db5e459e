// The conversation's model and settings (the header's model menu and its settings dialog),
// the models' names on answers, and the titles the model writes after a first answer.
// A new chat keeps its choices here until its first message creates the conversation.
import { api, urls } from "./api.js";
import { broadcast, showNotice, state } from "./state.js";

const $ = (selector) => document.querySelector(selector);

/** The models (GET /api/models), loaded once: [{id, name, default, temperature}]. */
let models = [];
/** A new chat's choices, sent with the conversation it creates: {model, system_prompt,
 * temperature}, only those chosen. */
let draft = {};

export function modelName(id) {
  return models.find((m) => m.id === id)?.name || id || "";
}

/** The settings a new conversation is created with (a new chat's choices). */
export function draftSettings() {
  return { ...draft };
}

function current() {
  return state.conversations.find((c) => c.id === state.currentId) || null;
}

function settingsOf(conversation) {
  const fallback = models.find((m) => m.default)?.id || models[0]?.id || "";
  if (!conversation) {
    return { model: draft.model || fallback, system_prompt: draft.system_prompt ?? null,
      temperature: draft.temperature ?? null };
  }
  const known = models.some((m) => m.id === conversation.model);
  return { model: known ? conversation.model : fallback,
    system_prompt: conversation.system_prompt, temperature: conversation.temperature };
}

export class Settings {
  constructor() {
    this.picker = $("#model-picker");
    this.button = $("#settings-button");
    this.dialog = $("#settings-dialog");
    this.form = $("#settings-form");
    this.prompt = $("#settings-system-prompt");
    this.temperature = $("#settings-temperature");
    this.temperatureNote = $("#settings-temperature-note");
    this.error = $("#settings-error");
    this.picker.addEventListener("change", () => this.choose(this.picker.value));
    this.button.addEventListener("click", () => this.open());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    $("#settings-cancel").addEventListener("click", () => this.dialog.close());
  }

  async load() {
    try {
      models = (await api("GET", urls.models)).models;
    } catch {
      models = [];
    }
    const options = models.map((m) => {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.name;
      return option;
    });
    this.picker.replaceChildren(...options);
    this.picker.hidden = models.length < 2; // one model: nothing to pick
    for (const el of document.querySelectorAll(".message[data-model]")) {
      el.querySelector(".answer-model").textContent = ` · ${modelName(el.dataset.model)}`;
    }
    this.show();
  }

  /** Shows the settings of the conversation shown (or of the new chat). */
  show() {
    const shown = settingsOf(current());
    if (shown.model) this.picker.value = shown.model;
  }

  /** A new chat starts from the defaults. */
  reset() {
    draft = {};
    this.show();
  }

  async choose(model) {
    await this.change({ model });
  }

  async change(changes) {
    const id = state.currentId;
    if (!id) {
      draft = { ...draft, ...changes };
      this.show();
      return true;
    }
    let conversation;
    try {
      conversation = await api("PATCH", urls.conversation(id), changes);
    } catch (err) {
      if (this.dialog.open) this.error.textContent = err.message;
      else showNotice(err.message);
      this.show();
      return false;
    }
    const index = state.conversations.findIndex((c) => c.id === id);
    if (index >= 0) state.conversations[index] = { ...state.conversations[index], ...conversation };
    else state.conversations.push(conversation);
    broadcast({ type: "list" });
    this.show();
    return true;
  }

  open() {
    const shown = settingsOf(current());
    const model = models.find((m) => m.id === shown.model);
    const takes = !model || model.temperature;
    this.prompt.value = shown.system_prompt || "";
    this.temperature.value = shown.temperature ?? "";
    this.temperature.disabled = !takes;
    this.temperatureNote.hidden = takes;
    this.error.textContent = "";
    this.dialog.showModal();
    this.prompt.focus();
  }

  async save() {
    const prompt = this.prompt.value.trim() ? this.prompt.value : null;
    const raw = this.temperature.value.trim();
    const changes = { system_prompt: prompt };
    if (!this.temperature.disabled) {
      const value = raw === "" ? null : Number(raw);
      if (value !== null && !(value >= 0 && value <= 2)) {
        this.error.textContent = "The temperature must be a number from 0 to 2.";
        this.temperature.focus();
        return;
      }
      changes.temperature = value;
    }
    if (await this.change(changes)) {
      this.dialog.close();
      this.button.focus();
    }
  }
}

/** While a conversation's title is being written by the model, the list is asked again
 * every second; when it has come, the other tabs are told. */
let titleTimer = 0;
let waitingForTitle = false;
export function watchTitles(conversations, refresh) {
  clearTimeout(titleTimer);
  const pending = conversations.some((c) => c.title_source === "pending");
  if (pending) {
    waitingForTitle = true;
    titleTimer = setTimeout(refresh, 1000);
  } else if (waitingForTitle) {
    waitingForTitle = false;
    broadcast({ type: "list" });
  }
}
