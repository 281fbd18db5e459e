// Brings the page up to date with its state: the buttons and the composer (refreshUi), and
// the list of conversations (refreshList). Both conversations.js and answers.js call them,
// as does follow.js when an answer ends, so they live below all three: the page's modules
// import each other one way only (tests/test_page_modules.py checks there is no cycle).
import { api, urls } from "./api.js";
import { updateActions } from "./messages.js";
import { watchTitles } from "./settings.js";
import { setTitle, showNotice, state, ui } from "./state.js";

// The list response early.js started before the modules loaded (none if it did not run).
const { takeList } = window.brookEarly || { takeList: () => null };

export function refreshUi() {
  // While a message waits to be sent again (busy.js), Send sends it now; while an edit or
  // a regenerate waits, nothing else starts.
  const waiting = ui.busy.waiting;
  const busy = state.sending || state.streams.size > 0 || Boolean(ui.busy.kind);
  ui.composer.setState(state.sending ? "sending" : state.streams.size ? "streaming"
    : waiting && waiting !== "message" ? "waiting" : "idle");
  const last = state.records.at(-1);
  for (const record of state.records) updateActions(record, { isLast: record === last, busy });
}

export async function refreshList() {
  const token = ++state.listToken;
  let data;
  try {
    data = await api("GET", urls.conversations, null, takeList());
  } catch (err) {
    showNotice(err.message);
    return;
  }
  if (token !== state.listToken) return;
  state.conversations = data.conversations;
  refreshUsage();
  ui.sidebar.render(data.conversations);
  const current = data.conversations.find((c) => c.id === state.currentId);
  if (current) setTitle(current.title);
  ui.settings?.show();
  watchTitles(data.conversations, refreshList);
}

const number = new Intl.NumberFormat();

/** The usage line by the composer: today's tokens, and what is left of the daily limit. */
export async function refreshUsage() {
  const line = document.getElementById("usage");
  if (!line) return;
  let usage;
  try {
    usage = await api("GET", urls.usage);
  } catch {
    return; // the line keeps what it said; the notice speaks of failures
  }
  const tokens = usage.limits.tokens_per_day;
  let text = `Today: ${number.format(usage.tokens_today)} tokens`;
  if (tokens.limit !== null) text += ` · ${number.format(tokens.remaining)} left`;
  line.textContent = text;
  line.hidden = false;
}
