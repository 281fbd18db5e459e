"""The chat page under load, in Debian's chromium: one long streamed answer, and opening a
500-message conversation.

    .venv/bin/python benchmarks/page_long_answer.py                      # 20,000 tokens, ~200 s
    .venv/bin/python benchmarks/page_long_answer.py --tokens 2000 --json out.json  # quick run

1. Long answer. The fake model server streams a deterministic Markdown answer (headings,
   paragraphs, lists, tables, many fenced code blocks) of ``--tokens`` tokens of
   ``--chars-per-token`` characters (4: an OpenAI token is about 4 characters of English) at
   ``--rate`` tokens per second, through a real Brook server, into the page. Over the
   streaming period (Enter pressed .. the answer's ``data-status`` is ``complete``) it
   measures the renderer's main thread: long tasks (a ``PerformanceObserver`` installed
   before the page's own scripts), the busy share (CDP ``Performance.getMetrics``
   ``TaskDuration``, sampled every ``--sample`` seconds, over wall time) and a
   ``setTimeout`` lag probe (how late a 20 ms timer fires: what a keypress would wait).
   Goals: no long task (> 50 ms), main-thread busy share under 20 %.

2. Open conversation. 250 user and 250 assistant messages of realistic Markdown are written
   straight into the database (SQLAlchemy models) in a conversation owned by the page's
   anonymous cookie. Two timings, ``--repeats`` times each after one warm-up: a cold load
   (navigation to ``/#c=<id>`` .. the frame after all 500 messages are in the DOM, from
   ``performance.now()``, whose origin is the navigation) and a switch (the hash set on an
   open page .. the same frame). Goal: under 500 ms.

The Brook server (werkzeug's threaded server, a temporary SQLite file) runs in a thread of
this process; ``--server-process`` runs it in a process of its own instead, as in production
(in this one it shares the GIL with the Playwright driver; alternating runs of both measured
the same). Timings on a shared machine are noisy: compare medians and percentiles from one
run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, sync_playwright
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

import brook
from brook import create_app
from brook.models import Conversation, Message

# The fake model server lives with the tests (tests/fakemodel.py), outside the brook package;
# run as a script, this one has only benchmarks/ on its path: add the repository's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakemodel import FakeModelServer
from tests.services import chromium

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
LONG_TASK_MS = 50.0
BUSY_GOAL = 0.20
OPEN_GOAL_MS = 500.0
PROBE_MS = 20

# Installed in every page before its own scripts (init scripts run despite the CSP).
INSTRUMENT = """
(() => {
  const bench = window.__bench = { longtasks: [], lags: [], probeMs: PROBE_MS };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) bench.longtasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (error) {
    bench.longtaskError = String(error);
  }
  // Lag probe: how late a timer fires is how long the main thread was busy when it was due.
  let last = performance.now();
  const tick = () => {
    const now = performance.now();
    bench.lags.push([now, Math.max(0, now - last - bench.probeMs)]);
    last = now;
    setTimeout(tick, bench.probeMs);
  };
  setTimeout(tick, bench.probeMs);
  // When window.__benchTarget messages are in #messages: the DOM time, then the next frame.
  document.addEventListener("readystatechange", () => {
    if (document.readyState !== "interactive") return;
    const log = document.getElementById("messages");
    if (!log) return;
    new MutationObserver(() => {
      const target = window.__benchTarget || 0;
      if (!target || bench.domAt !== undefined) return;
      if (log.querySelectorAll(":scope > .message").length < target) return;
      bench.domAt = performance.now();
      requestAnimationFrame(() => {
        bench.frameAt = performance.now();
        setTimeout(() => { bench.doneAt = performance.now(); }, 0);
      });
    }).observe(log, { childList: true });
  });
})();
""".replace("PROBE_MS", str(PROBE_MS))

ASSISTANT = '.message[data-role="assistant"]'

# -- deterministic realistic Markdown ---------------------------------------------------------

_VOCABULARY = (
    "request response stream server client browser token answer message model database "
    "session cookie header event buffer queue worker thread process socket timeout retry "
    "cache index query schema migration table column row value field record config setting "
    "deploy container image build release version error status check test result output "
    "input parser render frame layout style script module function class method object "
    "array string number integer boolean list map set key path file folder network latency "
    "throughput memory heap garbage collector pointer reference handler callback promise "
    "async await loop scheduler priority budget limit quota region zone replica primary "
    "secondary failover backup restore snapshot log metric trace span dashboard alert"
)
_WORDS = tuple(_VOCABULARY.split())
_LANGS = ("python", "javascript", "bash", "sql", "json", "typescript", "go")


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 18))]
    for i in range(len(words)):
        roll = rng.random()
        if roll < 0.05:
            words[i] = f"`{words[i]}()`"
        elif roll < 0.08:
            words[i] = f"**{words[i]}**"
        elif roll < 0.10:
            words[i] = f"*{words[i]}*"
        elif roll < 0.11:
            words[i] = f"[{words[i]}](https://docs.example.com/{words[i]})"
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".....?!")


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 6)))


def _code(rng: random.Random) -> str:
    lang = rng.choice(_LANGS)
    lines = []
    for i in range(rng.randint(6, 28)):
        a, b, c = rng.choice(_WORDS), rng.choice(_WORDS), rng.choice(_WORDS)
        indent = "    " * rng.randint(0, 2)
        if lang == "python":
            line = rng.choice([f"def {a}_{b}({c}):", f"{a} = {b}.{c}({i})",
                               f"return {a}_{b}[{i}]", f"for {a} in {b}_{c}:",
                               f"# {a} {b} {c}", f'print(f"{{{a}}} {b}")'])
        elif lang in ("javascript", "typescript"):
            line = rng.choice([f"const {a} = await {b}.{c}({i});", f"function {a}({b}) {{",
                               f"if ({a}.{b} > {i}) return {c};", "}",
                               f"// {a} {b} {c}", f"{a}.{b}(({c}) => {c} * {i});"])
        elif lang == "bash":
            line = rng.choice([f"{a} --{b} {c}", f"export {a.upper()}={b}",
                               f"curl -s http://localhost:{8000 + i}/{a}", f"# {a} {b}"])
            indent = ""
        elif lang == "sql":
            line = rng.choice([f"SELECT {a}, {b} FROM {c} WHERE id = {i};",
                               f"CREATE INDEX ix_{a}_{b} ON {c} ({a});",
                               f"UPDATE {a} SET {b} = {i} WHERE {c} IS NULL;"])
            indent = ""
        elif lang == "json":
            line = f'"{a}_{b}": {{"{c}": {i}, "enabled": {str(i % 2 == 0).lower()}}},'
        else:
            line = rng.choice([f"func {a}({b} int) error {{", f"{a} := {b}.{c}({i})",
                               "if err != nil { return err }", "}"])
        lines.append(indent + line)
    return f"```{lang}\n" + "\n".join(lines) + "\n```"


def _bullets(rng: random.Random, ordered: bool) -> str:
    items = []
    for n in range(1, rng.randint(3, 8) + 1):
        mark = f"{n}." if ordered else "-"
        items.append(f"{mark} {_sentence(rng)}")
        if rng.random() < 0.25:
            items.extend(f"   - {_sentence(rng)}" for _ in range(rng.randint(1, 3)))
    return "\n".join(items)


def _table(rng: random.Random) -> str:
    cols = rng.randint(3, 5)
    head = [rng.choice(_WORDS).capitalize() for _ in range(cols)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * cols]
    for _ in range(rng.randint(3, 8)):
        cells = [rng.choice([rng.choice(_WORDS), f"`{rng.choice(_WORDS)}`",
                             str(rng.randint(1, 9999)), f"{rng.random():.2f} ms"])
                 for _ in range(cols)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _block(rng: random.Random, index: int) -> str:
    if index % 7 == 0:
        return f"## {index // 7 + 1}. {_sentence(rng).rstrip('.?!')}"
    roll = rng.random()
    if roll < 0.38:
        return _paragraph(rng)
    if roll < 0.62:
        return _code(rng)
    if roll < 0.80:
        return _bullets(rng, ordered=rng.random() < 0.4)
    if roll < 0.92:
        return _table(rng)
    return "> " + _sentence(rng) + " " + _sentence(rng)


def markdown(chars: int, seed: int) -> str:
    """A Markdown answer of about `chars` characters, the same for the same arguments."""
    rng = random.Random(seed)
    blocks: list[str] = []
    size = 0
    while size < chars:
        blocks.append(_block(rng, len(blocks)))
        size += len(blocks[-1]) + 2
    text = "\n\n".join(blocks)[:chars]
    if len(re.findall(r"^```", text, flags=re.MULTILINE)) % 2:
        text += "\n```"  # cut inside a code block: close it
    return text


# -- statistics -------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {"count": len(values), "max": max(values) if values else None,
            "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99)}


# -- the site: fake model + Brook on a free port ------------------------------------------------

@dataclass
class Site:
    url: str
    database_url: str
    fake: Any  # tests.fakemodel.FakeModelServer

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """An engine on the site's database, from this process."""
        engine = create_engine(self.database_url)
        try:
            yield engine
        finally:
            engine.dispose()


def serve(config: dict[str, str]) -> int:
    """--serve: the Brook app on a free port of 127.0.0.1 (werkzeug's threaded server) until
    SIGTERM; prints the port first."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app: Flask = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        chat = app.extensions.get("brook.chat")
        if chat is not None:
            chat.close()
        app.extensions["brook.engine"].dispose()
    return 0


@contextmanager
def brook_site(reply: str, gap: float, own_process: bool = False) -> Iterator[Site]:
    """The fake model server (in this process) and a Brook app using it, in a thread of this
    process, or with `own_process` in a process of its own, as in production (in this one it
    shares the GIL with the Playwright driver, which handles an event for each request)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="brook-bench-") as tmp, \
            FakeModelServer(reply=reply, gap=gap) as fake:
        config = {
            "DATABASE_URL": f"sqlite:///{tmp}/brook.db",
            "BROOK_INSTANCE_PATH": tmp,
            "SECRET_KEY": "benchmark",
            "OPENAI_BASE_URL": fake.url + "/v1",
            "OPENAI_API_KEY": "benchmark",
            "OPENAI_MODEL": "fake-gpt",
            "LOG_LEVEL": "WARNING",
        }
        if own_process:
            process = subprocess.Popen(
                [sys.executable, __file__, "--serve", json.dumps(config)],
                stdout=subprocess.PIPE, text=True)
            try:
                assert process.stdout is not None
                port = process.stdout.readline().strip()
                if not port.isdigit():
                    raise RuntimeError(f"the Brook server did not start: {port!r}")
                yield Site(f"http://127.0.0.1:{port}", config["DATABASE_URL"], fake)
            finally:
                process.terminate()
                process.wait(timeout=30)
            return
        app: Flask = create_app(config)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Site(f"http://127.0.0.1:{server.server_port}", config["DATABASE_URL"], fake)
        finally:
            server.shutdown()
            server.server_close()
            chat = app.extensions.get("brook.chat")
            if chat is not None:
                chat.close()
            app.extensions["brook.engine"].dispose()


def new_context(browser: Browser, target: int = 0) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(INSTRUMENT)
    if target:
        context.add_init_script(f"window.__benchTarget = {target};")
    return context


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => !document.querySelector('#prompt').disabled")
    return page


def task_metrics(cdp: CDPSession) -> dict[str, float]:
    result = cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in result["metrics"]}


# -- 1. the long answer -------------------------------------------------------------------------

def measure_long_answer(browser: Browser, tokens: int, rate: float, chars_per_token: int,
                        sample_s: float, own_process: bool = False) -> dict[str, Any]:
    answer = markdown(tokens * chars_per_token, seed=20000)
    expected_s = tokens / rate
    with brook_site(answer, gap=1 / rate, own_process=own_process) as site:
        context = new_context(browser)
        page = open_page(context, site.url + "/")
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable", {"timeDomain": "timeTicks"})
        page.wait_for_timeout(1000)  # let the page settle after load
        idle = [task_metrics(cdp)]
        page.wait_for_timeout(3000)  # the idle page (with the probes) as a baseline
        idle.append(task_metrics(cdp))

        page.fill("#prompt", "Write a long answer @@fake" + json.dumps({"chunk": chars_per_token}))
        samples = [task_metrics(cdp)]
        start = page.evaluate("performance.now()")
        page.press("#prompt", "Enter")
        page.wait_for_function("""(sel) => {
          const content = document.querySelector(sel + " .content");
          return content && content.textContent.length > 0;
        }""", arg=ASSISTANT, polling=20, timeout=60_000)
        first_at: float = page.evaluate("performance.now()")
        loads: list[float] = []
        deadline = time.monotonic() + expected_s * 3 + 120
        while True:
            page.wait_for_timeout(sample_s * 1000)
            samples.append(task_metrics(cdp))
            loads.append(os.getloadavg()[0])
            state = page.evaluate("""(sel) => {
              const el = document.querySelector(sel);
              const content = el && el.querySelector(".content");
              return { status: el && el.dataset.status,
                       chars: content ? content.textContent.length : 0, now: performance.now() };
            }""", ASSISTANT)
            if state["status"] not in (None, "streaming"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the answer is still streaming after {expected_s * 3 + 120} s")
        end = page.evaluate("performance.now()")
        final = page.evaluate("""(sel) => {
          const el = document.querySelector(sel);
          return { status: el.dataset.status,
                   chars: el.querySelector(".content").textContent.length,
                   elements: el.querySelectorAll(".content *").length,
                   codeBlocks: el.querySelectorAll(".content pre").length,
                   tables: el.querySelectorAll(".content table").length,
                   longtasks: window.__bench.longtasks, lags: window.__bench.lags,
                   longtaskError: window.__bench.longtaskError || null };
        }""", ASSISTANT)
        context.close()

    window = (end - start) / 1000
    longtasks = [d for t, d in final["longtasks"] if start <= t <= end]
    lags = [lag for t, lag in final["lags"] if start <= t <= end]
    first, last = samples[0], samples[-1]
    elapsed = last["Timestamp"] - first["Timestamp"]

    def share(name: str, a: dict[str, float], b: dict[str, float]) -> float:
        return (b[name] - a[name]) / (b["Timestamp"] - a["Timestamp"])

    windows = [share("TaskDuration", a, b) for a, b in itertools.pairwise(samples)
               if b["Timestamp"] > a["Timestamp"]]
    quarter = max(1, len(windows) // 4)
    busy = share("TaskDuration", first, last)
    result = {
        "tokens": tokens, "chars_per_token": chars_per_token, "rate_tokens_per_s": rate,
        "answer_chars": len(answer), "answer_status": final["status"],
        "rendered_chars": final["chars"], "rendered_elements": final["elements"],
        "code_blocks": final["codeBlocks"], "tables": final["tables"],
        "expected_stream_s": expected_s, "total_s": window,
        "achieved_tokens_per_s": tokens / window if window else None,
        "first_text_s": (first_at - start) / 1000,
        "idle_busy_share": share("TaskDuration", idle[0], idle[1]),
        "long_tasks_ms": summary(longtasks),
        "long_tasks_at": [[round((t - start) / 1000, 2), d] for t, d in final["longtasks"]
                          if start <= t <= end],  # [seconds after Enter, ms]
        "long_task_total_ms": sum(longtasks),
        "longtask_observer_error": final["longtaskError"],
        "busy_share": busy,
        "busy_breakdown": {name: share(name, first, last) for name in
                           ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration")},
        "busy_share_by_quarter": [statistics.fmean(windows[i:i + quarter])
                                  for i in range(0, quarter * 4, quarter)
                                  if windows[i:i + quarter]],
        "busy_share_peak_window": max(windows, default=None),
        "busy_sample_s": sample_s, "cdp_elapsed_s": elapsed,
        "loadavg_1min_while_streaming": summary(loads),
        "lag_probe_ms": {**summary(lags), "interval_ms": PROBE_MS},
        "lag_probe_busy_estimate": sum(lags) / 1000 / window if window else None,
    }
    result["goals"] = {
        "no_long_task_over_50ms": not longtasks,
        "busy_share_under_20pct": busy < BUSY_GOAL,
    }
    return result


# -- 2. opening a 500-message conversation --------------------------------------------------------

def fill_conversation(engine: Engine, conversation_id: str, messages: int) -> int:
    """Write `messages` alternating user/assistant messages; returns their total characters."""
    rng = random.Random(500)
    total = 0
    with Session(engine) as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
        assert conversation is not None
        conversation.title = "A long conversation"
        for position in range(messages):
            if position % 2 == 0:
                content = _paragraph(rng) if rng.random() < 0.8 else (
                    _sentence(rng) + "\n\n" + _code(rng))
                role = "user"
            else:
                size = rng.choice((600, 1200, 2000, 3000, 4500))
                content = markdown(size, rng.randrange(1 << 30))
                role = "assistant"
            total += len(content)
            session.add(Message(conversation_id=conversation.id, position=position, role=role,
                                content=content, status="complete"))
        session.commit()
    return total


def wait_rendered(page: Page, conversation_id: str) -> dict[str, Any]:
    """Wait for the frame after all messages are in the DOM; the page's timings."""
    page.wait_for_function("() => window.__bench && window.__bench.doneAt !== undefined",
                           polling=50, timeout=120_000)
    state: dict[str, Any] = page.evaluate("""(path) => {
      const b = window.__bench;
      const api = performance.getEntriesByType("resource").filter((e) => e.name.endsWith(path));
      return { domAt: b.domAt, frameAt: b.frameAt, longtasks: b.longtasks,
               apiEnd: api.length ? api[api.length - 1].responseEnd : null,
               apiStart: api.length ? api[api.length - 1].startTime : null,
               count: document.querySelectorAll("#messages > .message").length };
    }""", f"/api/conversations/{conversation_id}")
    return state


def measure_open(browser: Browser, messages: int, repeats: int,
                 own_process: bool = False) -> dict[str, Any]:
    with brook_site("unused", gap=0, own_process=own_process) as site:
        context = new_context(browser, target=messages)
        page = open_page(context, site.url + "/")
        conversation_id: str = page.evaluate("""async () => {
          const r = await fetch("/api/conversations", { method: "POST",
            headers: { "Content-Type": "application/json" }, body: "{}" });
          return (await r.json()).id;
        }""")
        with site.engine() as engine:
            chars = fill_conversation(engine, conversation_id, messages)
        page.close()

        cold: list[dict[str, float]] = []
        switch: list[dict[str, float]] = []
        for run in range(repeats + 1):  # run 0 warms up and is not counted
            page = context.new_page()
            page.goto(f"{site.url}/#c={conversation_id}")
            state = wait_rendered(page, conversation_id)
            assert state["count"] == messages, state
            # performance.now() counts from the navigation's start.
            long_ms = [d for t, d in state["longtasks"] if t <= state["frameAt"]]
            if run:
                cold.append({"rendered_ms": state["frameAt"], "dom_ms": state["domAt"],
                             "api_done_ms": state["apiEnd"] or math.nan,
                             "render_after_api_ms": state["frameAt"] - (state["apiEnd"] or 0),
                             "longest_task_ms": max(long_ms, default=0.0)})
            page.close()

            page = open_page(context, site.url + "/")
            page.wait_for_timeout(300)
            t0: float = page.evaluate("""(id) => {
              const t = performance.now();
              window.location.hash = "c=" + encodeURIComponent(id);
              return t;
            }""", conversation_id)
            state = wait_rendered(page, conversation_id)
            assert state["count"] == messages, state
            long_ms = [d for t, d in state["longtasks"] if t0 <= t <= state["frameAt"]]
            if run:
                switch.append({"rendered_ms": state["frameAt"] - t0,
                               "dom_ms": state["domAt"] - t0,
                               "api_done_ms": (state["apiEnd"] or math.nan) - t0,
                               "render_after_api_ms": state["frameAt"] - (state["apiEnd"] or 0),
                               "longest_task_ms": max(long_ms, default=0.0)})
            page.close()
        context.close()

    def stats(rows: list[dict[str, float]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in rows[0]:
            values = [r[key] for r in rows]
            out[key] = {"median": statistics.median(values), "p95": percentile(values, 95),
                        "runs": values}
        return out

    cold_stats, switch_stats = stats(cold), stats(switch)
    return {
        "messages": messages, "content_chars": chars, "repeats": repeats,
        "cold_load": cold_stats, "switch": switch_stats,
        "goals": {
            "cold_load_median_under_500ms":
                cold_stats["rendered_ms"]["median"] < OPEN_GOAL_MS,
            "cold_load_p95_under_500ms": cold_stats["rendered_ms"]["p95"] < OPEN_GOAL_MS,
            "switch_median_under_500ms": switch_stats["rendered_ms"]["median"] < OPEN_GOAL_MS,
            "switch_p95_under_500ms": switch_stats["rendered_ms"]["p95"] < OPEN_GOAL_MS,
        },
    }


# -- report -------------------------------------------------------------------------------------

def static_digest() -> str:
    """sha256 of the page's static files: which front end was measured."""
    static = Path(brook.__file__).parent / "static"
    digest = hashlib.sha256()
    for path in sorted(p for p in static.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(static)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def print_report(report: dict[str, Any]) -> None:
    env = report["environment"]
    print(f"\nchromium {env['chromium']}, {env['cpus']} CPUs, load average "
          f"{env['loadavg_before']} before / {env['loadavg_after']} after; "
          f"brook from {env['brook']}, its server in {env['brook_server']}")
    rows: list[tuple[str, str]] = []
    long = report.get("long_answer")
    if long:
        lt, lag = long["long_tasks_ms"], long["lag_probe_ms"]
        rows += [
            ("LONG ANSWER", f"{long['tokens']} tokens x {long['chars_per_token']} chars "
                            f"at {long['rate_tokens_per_s']:g}/s ({long['answer_chars']} chars, "
                            f"{long['code_blocks']} code blocks, {long['tables']} tables)"),
            ("status / rendered chars", f"{long['answer_status']} / {long['rendered_chars']}"),
            ("1-min load while streaming", "median {} / max {} ({} CPUs)".format(
                fmt(long["loadavg_1min_while_streaming"]["p50"], "", 2),
                fmt(long["loadavg_1min_while_streaming"]["max"], "", 2), os.cpu_count())),
            ("total time", f"{long['total_s']:.1f} s (expected {long['expected_stream_s']:.0f} s, "
                           f"{long['achieved_tokens_per_s']:.0f} tokens/s), "
                           f"first text at {fmt(long['first_text_s'], ' s', 2)}"),
            ("long tasks", f"{lt['count']} (total {long['long_task_total_ms']:.0f} ms)"),
            ("long task ms max/p50/p95/p99", " / ".join(
                fmt(lt[k], "", 0) for k in ("max", "p50", "p95", "p99"))),
            ("main-thread busy share", f"{long['busy_share'] * 100:.1f} % (idle page "
             f"{long['idle_busy_share'] * 100:.1f} %; "
             f"script {long['busy_breakdown']['ScriptDuration'] * 100:.1f} %, layout "
             f"{long['busy_breakdown']['LayoutDuration'] * 100:.1f} %, style "
             f"{long['busy_breakdown']['RecalcStyleDuration'] * 100:.1f} %)"),
            ("busy share by quarter", " / ".join(
                f"{s * 100:.0f} %" for s in long["busy_share_by_quarter"])),
            ("busy share, peak window", f"{fmt((long['busy_share_peak_window'] or 0) * 100)} % "
                                        f"over {long['busy_sample_s']:g} s"),
            ("timer lag ms max/p50/p95/p99", " / ".join(
                fmt(lag[k], "", 0) for k in ("max", "p50", "p95", "p99"))),
            ("goal: no long task > 50 ms", fmt(long["goals"]["no_long_task_over_50ms"])),
            ("goal: busy share < 20 %", fmt(long["goals"]["busy_share_under_20pct"])),
        ]
    opened = report.get("open_conversation")
    if opened:
        cold, switch = opened["cold_load"], opened["switch"]
        rows += [
            ("OPEN CONVERSATION", f"{opened['messages']} messages, {opened['content_chars']} "
                                  f"chars, {opened['repeats']} runs after a warm-up"),
            ("cold load ms median / p95", f"{cold['rendered_ms']['median']:.0f} / "
                                          f"{cold['rendered_ms']['p95']:.0f}"),
            ("  of which API done at", f"{cold['api_done_ms']['median']:.0f} / "
                                       f"{cold['api_done_ms']['p95']:.0f}"),
            ("  longest task", f"{cold['longest_task_ms']['median']:.0f} / "
                               f"{cold['longest_task_ms']['p95']:.0f}"),
            ("switch ms median / p95", f"{switch['rendered_ms']['median']:.0f} / "
                                       f"{switch['rendered_ms']['p95']:.0f}"),
            ("  of which API done at", f"{switch['api_done_ms']['median']:.0f} / "
                                       f"{switch['api_done_ms']['p95']:.0f}"),
            ("  longest task", f"{switch['longest_task_ms']['median']:.0f} / "
                               f"{switch['longest_task_ms']['p95']:.0f}"),
            ("goal: open < 500 ms (median)", fmt(opened["goals"]["cold_load_median_under_500ms"]
                                                 and opened["goals"]["switch_median_under_500ms"])),
            ("goal: open < 500 ms (p95)", fmt(opened["goals"]["cold_load_p95_under_500ms"]
                                              and opened["goals"]["switch_p95_under_500ms"])),
        ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=20000, help="answer length (tokens)")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens per second")
    parser.add_argument("--chars-per-token", type=int, default=4)
    parser.add_argument("--sample", type=float, default=2.0,
                        help="seconds between main-thread samples while streaming")
    parser.add_argument("--messages", type=int, default=500, help="conversation length")
    parser.add_argument("--repeats", type=int, default=5, help="timed opens of each kind")
    parser.add_argument("--skip-long", action="store_true", help="skip the long answer")
    parser.add_argument("--skip-open", action="store_true", help="skip opening a conversation")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--server-process", action="store_true",
                        help="run the Brook server in a process of its own rather than in a "
                             "thread of this one")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(json.loads(args.serve))

    report: dict[str, Any] = {}
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    started = time.time()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            if not args.skip_long:
                report["long_answer"] = measure_long_answer(
                    browser, args.tokens, args.rate, args.chars_per_token, args.sample,
                    own_process=args.server_process)
            if not args.skip_open:
                report["open_conversation"] = measure_open(browser, args.messages, args.repeats,
                                                           own_process=args.server_process)
            version = browser.version
        finally:
            browser.close()
    report["environment"] = {
        "chromium": version, "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "brook": str(Path(brook.__file__).parent),
        "static_sha256": static_digest(), "loadavg_before": loadavg_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1), "argv": sys.argv[1:],
        "brook_server": "own process" if args.server_process else "thread of the benchmark process",
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
