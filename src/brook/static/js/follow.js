// Following an answer's stream into its message: used when an answer starts (answers.js) and
// when a conversation is shown with an answer still streaming (conversations.js). It has a
// module of its own so that neither of those two needs to import the other.
import { api, urls } from "./api.js";
import { clearThinking, setConnection, setProgress, setStatus, thinkingOf } from "./messages.js";
import { refreshList, refreshUi } from "./refresh.js";
import { state, ui } from "./state.js";
import { AnswerStream } from "./stream.js";

export function attach(record, url) {
  const conversationId = state.currentId;
  state.streams.get(record.id)?.close();
  setStatus(record, "streaming", null);
  clearThinking(record); // the stream starts from the beginning, reasoning first
  const stream = new AnswerStream(url, record.view, {
    render: () => ui.follower.changed(),
    thinking: (open) => {
      const thinking = thinkingOf(record);
      thinking.setOpen(open);
      ui.follower.changed();
      return thinking.view;
    },
    stored: () => ui.follower.changed(),
    progress: (data) => {
      setProgress(record, data);
      ui.follower.changed();
    },
    error: (error) => {
      setStatus(record, "streaming", error);
      ui.follower.changed();
    },
    connection: (connection) => setConnection(record, connection),
    end: (status, error, usage) => {
      if (state.streams.get(record.id) === stream) state.streams.delete(record.id);
      record.usage = usage;
      setStatus(record, status, error);
      refreshUi();
      ui.follower.changed();
      refreshList();
    },
    recover: async () => {
      try {
        const conversation = await api("GET", urls.conversation(conversationId));
        return conversation.messages.find((m) => m.id === record.id) || null;
      } catch (err) {
        if (err.status === 404) return null;
        throw err;
      }
    },
  });
  state.streams.set(record.id, stream);
  refreshUi();
}
