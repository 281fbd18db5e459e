"""Search: a full-text index of conversation titles and final messages (issue 16).

What is indexed: every conversation's title, and a message's text once it is final (a
user's message as it is stored, an answer when its status leaves `streaming`), up to its
first 100,000 characters. chat/search.py queries it; what each dialect builds:

- **SQLite**: an FTS5 table `search_index` (contentless: the text stays in `messages` and
  `conversations` only) whose rowids are those of `search_rows`, the map from an index row
  to its conversation and message (message NULL: the title). Triggers keep both current:
  a message is indexed when it is inserted final or its status leaves `streaming`, indexed
  again when its final text changes (an edit), unindexed when deleted (a conversation's
  delete cascades to its messages, whose triggers fire); a title when it changes. The
  flushes of a streaming answer (UPDATE ... SET content) fire no trigger body: their WHEN
  is false while the status stays `streaming`.
  A contentless table is told what to delete by the text it indexed, which the triggers
  have as OLD values. Its rowids are `search_rows.id`, an INTEGER PRIMARY KEY: the implicit
  rowids of `messages` (which has a UUID key) may change on VACUUM.
  A later migration that makes SQLite recreate `messages` or `conversations` (a batch
  operation SQLite's ALTER TABLE cannot do in place) drops their triggers: create them
  again there (`_sqlite_triggers` below).
- **PostgreSQL**: `messages.search_vector`, a stored generated tsvector that is NULL while
  the answer streams and the text's vector once it is final, with a partial GIN index; a
  GIN expression index on the titles. Why a generated column and not an expression index
  over `content`: every flush of a streaming answer UPDATEs `content`, and an index over a
  column the UPDATE changes makes it a non-HOT update (a new entry in every index of
  `messages`, measured: 0 of 100 flushes HOT); the generated column stays NULL, unchanged,
  while the status is `streaming`, so those flushes stay HOT and only the final write
  computes the vector. Punctuation is turned into spaces first so that PostgreSQL's parser
  splits words as SQLite's unicode61 tokenizer does ("example.com", "foo_bar" and
  "state-of-the-art" are words of their own parts, not a host name or one compound).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# -- SQLite ------------------------------------------------------------------------------------
# A message's indexed text is substr(content, 1, 100000); its index row is its search_rows
# row (message_id), a title's the conversation's row with message_id NULL. To take a text
# out of a contentless FTS5 table, the 'delete' command is given the text it indexed.

_SQLITE_TRIGGERS = {
    "messages_search_insert": """
        AFTER INSERT ON messages WHEN new.status <> 'streaming' BEGIN
          INSERT OR IGNORE INTO search_rows (conversation_id, message_id)
            VALUES (new.conversation_id, new.id);
          INSERT INTO search_index (rowid, body)
            SELECT id, substr(new.content, 1, 100000) FROM search_rows
            WHERE message_id = new.id;
        END""",
    # Also each flush of a streaming answer (UPDATE ... SET content): WHEN is false.
    "messages_search_update": """
        AFTER UPDATE OF content, status ON messages
        WHEN old.status <> 'streaming' OR new.status <> 'streaming' BEGIN
          INSERT INTO search_index (search_index, rowid, body)
            SELECT 'delete', id, substr(old.content, 1, 100000) FROM search_rows
            WHERE message_id = old.id AND old.status <> 'streaming';
          DELETE FROM search_rows WHERE message_id = old.id AND new.status = 'streaming';
          INSERT OR IGNORE INTO search_rows (conversation_id, message_id)
            SELECT new.conversation_id, new.id WHERE new.status <> 'streaming';
          INSERT INTO search_index (rowid, body)
            SELECT id, substr(new.content, 1, 100000) FROM search_rows
            WHERE message_id = new.id AND new.status <> 'streaming';
        END""",
    "messages_search_delete": """
        AFTER DELETE ON messages BEGIN
          INSERT INTO search_index (search_index, rowid, body)
            SELECT 'delete', id, substr(old.content, 1, 100000) FROM search_rows
            WHERE message_id = old.id AND old.status <> 'streaming';
          DELETE FROM search_rows WHERE message_id = old.id;
        END""",
    "conversations_search_insert": """
        AFTER INSERT ON conversations BEGIN
          INSERT OR IGNORE INTO search_rows (conversation_id, message_id) VALUES (new.id, NULL);
          INSERT INTO search_index (rowid, body)
            SELECT id, new.title FROM search_rows
            WHERE conversation_id = new.id AND message_id IS NULL;
        END""",
    # Every send stamps its conversation (and may name it): only a new title is indexed.
    "conversations_search_update": """
        AFTER UPDATE OF title ON conversations WHEN old.title IS NOT new.title BEGIN
          INSERT INTO search_index (search_index, rowid, body)
            SELECT 'delete', id, old.title FROM search_rows
            WHERE conversation_id = old.id AND message_id IS NULL;
          INSERT OR IGNORE INTO search_rows (conversation_id, message_id) VALUES (new.id, NULL);
          INSERT INTO search_index (rowid, body)
            SELECT id, new.title FROM search_rows
            WHERE conversation_id = new.id AND message_id IS NULL;
        END""",
    "conversations_search_delete": """
        AFTER DELETE ON conversations BEGIN
          INSERT INTO search_index (search_index, rowid, body)
            SELECT 'delete', id, old.title FROM search_rows
            WHERE conversation_id = old.id AND message_id IS NULL;
          DELETE FROM search_rows WHERE conversation_id = old.id AND message_id IS NULL;
        END""",
}


def _sqlite_triggers() -> None:
    for name, body in _SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def _upgrade_sqlite() -> None:
    op.execute("CREATE TABLE search_rows ("
               "id INTEGER PRIMARY KEY, "
               "conversation_id CHAR(32) NOT NULL, "
               "message_id CHAR(32) UNIQUE)")
    op.execute("CREATE UNIQUE INDEX ux_search_rows_title ON search_rows (conversation_id) "
               "WHERE message_id IS NULL")
    op.execute("CREATE VIRTUAL TABLE search_index USING fts5("
               "body, content='', tokenize='unicode61 remove_diacritics 2')")
    _sqlite_triggers()
    # What is already stored.
    op.execute("INSERT INTO search_rows (conversation_id, message_id) "
               "SELECT id, NULL FROM conversations")
    op.execute("INSERT INTO search_rows (conversation_id, message_id) "
               "SELECT conversation_id, id FROM messages WHERE status <> 'streaming'")
    op.execute("INSERT INTO search_index (rowid, body) SELECT r.id, c.title "
               "FROM search_rows r JOIN conversations c ON c.id = r.conversation_id "
               "WHERE r.message_id IS NULL")
    op.execute("INSERT INTO search_index (rowid, body) "
               "SELECT r.id, substr(m.content, 1, 100000) "
               "FROM search_rows r JOIN messages m ON m.id = r.message_id")


def _downgrade_sqlite() -> None:
    for name in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS search_index")
    op.execute("DROP TABLE IF EXISTS search_rows")


# -- PostgreSQL ------------------------------------------------------------------------------
# chat/search.py's query repeats the title's expression: keep the two the same, or the
# index goes unused.

def _upgrade_postgresql() -> None:
    # Adding a stored generated column computes it for every row: the backfill.
    op.execute("ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
               "CASE WHEN status <> 'streaming' THEN to_tsvector('simple'::regconfig, "
               "regexp_replace(left(content, 100000), '[[:punct:]]+', ' ', 'g')) END) STORED")
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search_vector) "
               "WHERE search_vector IS NOT NULL")
    op.execute("CREATE INDEX ix_conversations_search ON conversations USING gin ("
               "(to_tsvector('simple'::regconfig, "
               "regexp_replace(title, '[[:punct:]]+', ' ', 'g'))))")


def _downgrade_postgresql() -> None:
    op.execute("DROP INDEX IF EXISTS ix_conversations_search")
    op.execute("DROP INDEX IF EXISTS ix_messages_search")
    op.drop_column("messages", "search_vector")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _downgrade_sqlite()
    else:
        _downgrade_postgresql()
