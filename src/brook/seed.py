"""Demo data: realistic conversations made up with Faker, for `brook db seed`.

Questions about code, SQL, writing and travel, with Markdown answers (code blocks, lists,
tables), spread over the last weeks. Most answers are complete; a few were stopped, failed
or interrupted, as in real use. Every seeded message carries `worker = 'brook-seed'`, so
`--reset` finds and deletes exactly what earlier seeds made for that owner, and nothing else.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from faker import Faker
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import Conversation, Message, default_title, utcnow

DEMO_OWNER = "demo:brook-seed"
SEED_MARK = "brook-seed"  # in messages.worker: made by the seed, not by a model
MODELS = ("gpt-4o-mini", "Qwen/Qwen3-0.6B", "llama3.2")
ERRORS = (
    {"code": "upstream_timeout",
     "message": "The model service took too long to answer. Please try again."},
    {"code": "rate_limited",
     "message": "The model service is busy right now. Please wait a moment and try again."},
    {"code": "stream_interrupted",
     "message": "The connection to the model service broke off before the answer was "
                "complete."},
)
FOLLOW_UPS = ("Can you make it shorter?", "Thanks! How would I test that?",
              "Explain the second step in more detail.", "Is there a simpler way?",
              "What could go wrong with this?")

Turn = tuple[str, str]  # question, Markdown answer


@dataclass(frozen=True)
class SeedResult:
    conversations: int
    messages: int
    deleted: int


def seed_demo(session: Session, *, owner: str = DEMO_OWNER, count: int = 25,
              seed: int | None = None, reset: bool = False, weeks: int = 6,
              now: datetime | None = None) -> SeedResult:
    """Add `count` conversations for `owner` (after deleting earlier seeded ones if `reset`).

    The same `seed` gives the same conversations; their times are relative to `now`.
    """
    deleted = reset_demo(session, owner) if reset else 0
    fake, rng = Faker(), random.Random(seed)
    fake.seed_instance(seed if seed is not None else rng.randrange(2**32))
    now = now or utcnow()
    messages = 0
    for _ in range(count):
        conversation = _conversation(fake, rng, owner,
                                     now - timedelta(seconds=rng.uniform(600, weeks * 7 * 86400)))
        session.add(conversation)
        messages += len(conversation.messages)
    session.commit()
    return SeedResult(count, messages, deleted)


def reset_demo(session: Session, owner: str) -> int:
    """Delete the owner's conversations an earlier seed made; the number deleted."""
    seeded = select(Message.conversation_id).where(Message.worker == SEED_MARK)
    ids = session.scalars(select(Conversation.id).where(Conversation.owner == owner,
                                                        Conversation.id.in_(seeded))).all()
    if ids:
        session.execute(delete(Message).where(Message.conversation_id.in_(ids)))
        session.execute(delete(Conversation).where(Conversation.id.in_(ids)))
    session.commit()
    return len(ids)


def _conversation(fake: Faker, rng: random.Random, owner: str, start: datetime) -> Conversation:
    title, turns = rng.choice(TOPICS)(fake, rng)
    turns += [(rng.choice(FOLLOW_UPS), _follow_up_answer(fake, rng))
              for _ in range(rng.choice((0, 0, 0, 1, 1, 2)))]
    model = rng.choice(MODELS)
    conversation = Conversation(id=uuid.uuid4(), owner=owner, created_at=start,
                                title=title if rng.random() < 0.4 else default_title(turns[0][0]))
    at, history = start, 0
    for number, (question, answer) in enumerate(turns):
        at += timedelta(seconds=rng.uniform(5, 240))
        conversation.messages.append(_message(2 * number, "user", question, at))
        history += _tokens(question)
        at += timedelta(seconds=rng.uniform(2, 40))
        reply = _message(2 * number + 1, "assistant", answer, at, model=model,
                         prompt_tokens=history, completion_tokens=_tokens(answer))
        if number == len(turns) - 1:
            _maybe_unfinished(reply, rng)
        conversation.messages.append(reply)
        history += _tokens(answer)
    conversation.updated_at = at
    return conversation


def _message(position: int, role: str, content: str, at: datetime, **extra: Any) -> Message:
    return Message(id=uuid.uuid4(), position=position, role=role, content=content,
                   status="complete", worker=SEED_MARK, created_at=at, updated_at=at, **extra)


def _maybe_unfinished(reply: Message, rng: random.Random) -> None:
    """About one answer in eight ends stopped, failed or interrupted, with partial text."""
    roll = rng.random()
    if roll > 0.125:
        return
    reply.content = reply.content[: rng.randrange(len(reply.content) // 3, len(reply.content))]
    reply.completion_tokens = None
    if roll < 0.06:
        reply.status = "stopped"
    elif roll < 0.1:
        reply.status, reply.error = "error", dict(rng.choice(ERRORS))
        reply.prompt_tokens = None
    else:
        reply.status = "interrupted"


def _tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 1.3))


# -- topics: each makes a title and the first turn -----------------------------------------

def _code(fake: Faker, rng: random.Random) -> tuple[str, list[Turn]]:
    thing = fake.word()
    language, task, snippet = rng.choice((
        ("Python", f"read a CSV of {thing}s and sum a column",
         f"```python\nimport csv\n\n\ndef total_{thing}(path: str, column: str) -> float:\n"
         f"    with open(path, newline=\"\") as f:\n"
         f"        return sum(float(row[column]) for row in csv.DictReader(f))\n\n\n"
         f"print(total_{thing}(\"{fake.file_name(extension='csv')}\", \"amount\"))\n```"),
        ("Python", "retry an HTTP request with backoff",
         "```python\nimport time\n\nimport httpx\n\n\ndef get_with_retries(url: str, "
         "attempts: int = 3) -> httpx.Response:\n    for attempt in range(attempts):\n"
         "        try:\n            return httpx.get(url, timeout=10).raise_for_status()\n"
         "        except httpx.HTTPError:\n            if attempt == attempts - 1:\n"
         "                raise\n            time.sleep(2 ** attempt)\n\n\n"
         f"get_with_retries(\"{fake.url()}\")\n```"),
        ("JavaScript", "debounce a search box",
         "```javascript\nfunction debounce(fn, ms) {\n  let timer;\n  return (...args) => {\n"
         "    clearTimeout(timer);\n    timer = setTimeout(() => fn(...args), ms);\n  };\n}\n\n"
         f"const search = debounce((q) => fetch(`/api/{thing}?q=${{q}}`), 300);\n"
         "input.addEventListener(\"input\", (e) => search(e.target.value));\n```"),
        ("Bash", f"find the largest {thing} files",
         f"```bash\nfind {fake.file_path(depth=2).rsplit('/', 1)[0]} -type f -printf "
         "'%s %p\\n' \\\n  | sort -rn | head -n 10\n```"),
    ))
    question = f"How do I {task} in {language}?"
    answer = (f"{fake.sentence(nb_words=12)} Here is a small version:\n\n{snippet}\n\n"
              f"A few notes:\n\n- {fake.sentence()}\n- {fake.sentence()}\n- "
              f"{fake.sentence()}")
    return f"{language}: {task}", [(question, answer)]


def _sql(fake: Faker, rng: random.Random) -> tuple[str, list[Turn]]:
    table, group = rng.choice((("orders", "customer_id"), ("events", "country"),
                               ("invoices", "status"), ("signups", "plan")))
    question = f"Write a SQL query that counts {table} per {group} for the last 30 days."
    answer = (f"Group by `{group}` and filter on the date first:\n\n```sql\nSELECT {group}, "
              f"COUNT(*) AS {table}\nFROM {table}\nWHERE created_at >= CURRENT_DATE - "
              f"INTERVAL '30 days'\nGROUP BY {group}\nORDER BY {table} DESC;\n```\n\n"
              f"{fake.paragraph(nb_sentences=2)} An index on `({group}, created_at)` keeps "
              "it fast as the table grows.")
    return f"SQL: {table} per {group}", [(question, answer)]


def _compare(fake: Faker, rng: random.Random) -> tuple[str, list[Turn]]:
    a, b = rng.choice((("SQLite", "PostgreSQL"), ("threads", "processes"),
                       ("REST", "GraphQL"), ("a list", "a tuple"), ("TCP", "UDP")))
    question = f"What is the difference between {a} and {b}?"
    answer = (f"{fake.paragraph(nb_sentences=2)}\n\n| | {a} | {b} |\n| --- | --- | --- |\n"
              f"| strength | {fake.word()} | {fake.word()} |\n| typical use | "
              f"{fake.bs()} | {fake.bs()} |\n\n**In short:** {fake.sentence()}")
    return f"{a} vs {b}", [(question, answer)]


def _email(fake: Faker, rng: random.Random) -> tuple[str, list[Turn]]:
    name, topic = fake.first_name(), fake.catch_phrase().lower()
    question = f"Write a short, friendly email to {name} about the {topic} project."
    answer = (f"**Subject:** Update on the {topic} project\n\nHi {name},\n\n"
              f"{fake.paragraph(nb_sentences=3)}\n\n{fake.paragraph(nb_sentences=2)}\n\n"
              f"Best,\n{fake.first_name()}")
    return f"Email to {name}", [(question, answer)]


def _trip(fake: Faker, rng: random.Random) -> tuple[str, list[Turn]]:
    city, days = fake.city(), rng.randint(2, 4)
    question = f"Plan a {days}-day trip to {city} on a budget."
    plan = "\n\n".join(
        f"### Day {day}\n\n- Morning: {fake.sentence(nb_words=6)}\n- Afternoon: "
        f"{fake.sentence(nb_words=7)}\n- Evening: {fake.sentence(nb_words=5)}"
        for day in range(1, days + 1))
    answer = f"Here is a relaxed plan for {city}.\n\n{plan}\n\n> Tip: {fake.sentence()}"
    return f"Trip to {city}", [(question, answer)]


def _follow_up_answer(fake: Faker, rng: random.Random) -> str:
    steps = "\n".join(f"{n}. {fake.sentence()}" for n in range(1, rng.randint(3, 5)))
    return f"{fake.sentence(nb_words=10)}\n\n{steps}\n\n{fake.sentence()}"


TOPICS: tuple[Callable[[Faker, random.Random], tuple[str, list[Turn]]], ...] = (
    _code, _code, _sql, _compare, _email, _trip,
)
