"""The web console at /console, driven in a real browser (Playwright on Debian's
Chromium) against the session server: sign-in and sessions, CSRF, admin-only pages,
the playground's streamed answers, guardrails, keys, usage, knowledge bases, batch
jobs, agents, escaping of user text, and for every page a full-page screenshot, an
axe-core accessibility check and load-size / server-time numbers.

Needs /usr/bin/chromium (installed by scripts/lib.sh) and axe-core in
tests/clients/js/node_modules (installed by `npm ci` in scripts/test.sh).

Artifacts (screenshots, perf.json) go to $BASALT_TEST_ARTIFACTS/console, by default
tests/clients/artifacts/console (git-ignored).
"""
from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import statistics
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from basalt_support import CHAT_MODEL, EMBED_MODEL, LONG_PROMPT, chatml, http_request, user_msg

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HERE = Path(__file__).resolve().parent
AXE_JS = HERE / "js" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS_ROOT = Path(os.environ.get("BASALT_TEST_ARTIFACTS") or HERE / "artifacts")
ARTIFACTS = ARTIFACTS_ROOT / "console"

ROLE = "arn:aws:iam::000000000000:role/basalt-console-tests"
XSS = "x<script>window.__xss=1</script>"
# The signed-in pages (GET) a session is needed for.
PAGES = [
    "/console", "/console/playground", "/console/models", "/console/keys", "/console/usage",
    "/console/usage.csv", "/console/guardrails", "/console/knowledge-bases", "/console/batch",
    "/console/agents", "/console/customization",
]
MAX_FIRST_LOAD_BYTES = 300 * 1024
STATS_RE = re.compile(
    r"^(\d+) tokens in, (\d+) out · latency \d+ ms · first token \d+ ms · cost \$\d+\.\d+ · stop: \w+$"
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------
# Browser fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the console tests drive Debian's Chromium, which "
                    "scripts/lib.sh installs (install_system_packages: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.fail(f"playwright is not installed ({e}): pip install -r tests/clients/requirements.txt")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def contexts(browser, server):
    """Per test: contexts(**kw) opens a fresh context; all are closed after the test."""
    made = []

    def _make(**kw):
        ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900}, **kw)
        ctx.set_default_timeout(30_000)
        made.append(ctx)
        return ctx

    yield _make
    for ctx in made:
        ctx.close()


@pytest.fixture
def page(contexts):
    """A page in a fresh, empty context (not signed in)."""
    return contexts().new_page()


@pytest.fixture(scope="module")
def admin(server):
    """An administrator key (`basalt keys create --admin`)."""
    data = server.cli_json("keys", "create", "--name", unique("console-admin"), "--admin", "--json")
    listed = {k["id"]: k for k in server.cli_json("keys", "list", "--json")}
    assert listed.get(data["id"], {}).get("admin") is True, (
        f"`keys create --admin` did not make an admin key: {listed.get(data['id'])}")
    return data


@pytest.fixture(scope="module")
def user_key(create_key):
    """A normal (non-admin) key."""
    return create_key(unique("console-user"))


@pytest.fixture
def admin_page(page, admin):
    sign_in(page, admin["bearer_token"])
    return page


@pytest.fixture
def user_page(page, user_key):
    sign_in(page, user_key.bearer_token)
    return page


@pytest.fixture(scope="module")
def bedrock(make_client, key):
    return make_client("bedrock", key)


@pytest.fixture(scope="module")
def bedrock_agent(make_client, key):
    return make_client("bedrock-agent", key)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def sign_in(page, token: str | None = None, *, access_key: str | None = None, secret: str | None = None,
            next_path: str | None = None, expect: int = 200):
    """Sign in through the form; returns the final navigation's response (the page
    after the redirect, or the sign-in page again on failure) and checks its status."""
    url = "/console/sign-in"
    if next_path:
        url += "?next=" + urllib.parse.quote(next_path, safe="")
    r = page.goto(url)
    assert r.status == 200, f"GET {url}: HTTP {r.status}"
    if token is not None:
        page.fill("#token", token)
    else:
        page.click("text=Or an access key and secret")
        page.fill("#access_key_id", access_key or "")
        page.fill("#secret_access_key", secret or "")
    with page.expect_navigation() as nav:
        page.click("#sign-in")
    resp = nav.value
    assert resp is not None and resp.status == expect, (
        f"sign-in: expected HTTP {expect}, got {resp and resp.status} at {page.url}; "
        f"page error: {error_text(page)!r}")
    return resp


def error_text(page) -> str | None:
    loc = page.locator("#page-error")
    return loc.first.inner_text() if loc.count() else None


def goto(page, path: str, status: int = 200):
    r = page.goto(path)
    assert r is not None, f"GET {path}: no response"
    assert r.status == status, (
        f"GET {path}: expected HTTP {status}, got {r.status} (now at {page.url}); "
        f"page error: {error_text(page)!r}; body starts: {page.content()[:300]!r}")
    return r


def submit(page, selector: str, status: int | tuple = 200):
    """Click a submit control and wait for the navigation; checks the final status
    (one, or any of a tuple)."""
    with page.expect_navigation() as nav:
        page.click(selector)
    r = nav.value
    allowed = status if isinstance(status, tuple) else (status,)
    assert r is not None and r.status in allowed, (
        f"submitting {selector}: expected HTTP {status}, got {r and r.status} at {page.url}; "
        f"page error: {error_text(page)!r}")
    return r


def open_details_of(page, selector: str):
    """Opens the <details> that holds `selector`, by clicking its summary (as a user)."""
    is_open = page.evaluate(
        "s => { const d = document.querySelector(s).closest('details'); return !d || d.open; }", selector)
    if not is_open:
        page.locator("details", has=page.locator(selector)).locator("summary").first.click()
    page.wait_for_selector(selector, state="visible")


def find_in_pages(page, path: str, table: str, text: str, max_pages: int = 50):
    """Opens a paged list and follows its "Next page" links until `table` has a row
    with `text`; returns that row's locator (fails if no page has it)."""
    goto(page, path)
    for _ in range(max_pages):
        row = page.locator(f"{table} tbody tr", has_text=text)
        if row.count():
            return row.first
        nxt = page.locator("a", has_text="Next page")
        if not nxt.count():
            break
        with page.expect_navigation():
            nxt.first.click()
    pytest.fail(f"{text!r} is not listed in {table} on any page of {path}")


def csrf_of(page) -> str:
    token = page.evaluate("() => document.body.dataset.csrf")
    assert token and re.fullmatch(r"[0-9a-f]{64}", token), f"no CSRF token in <body data-csrf>: {token!r}"
    return token


def nav_labels(page) -> list[str]:
    return [t.strip() for t in page.locator("header nav ul").nth(1).locator("a").all_inner_texts()]


def set_playground(page, *, max_tokens: int = 24, temperature: str = "0", model: str = CHAT_MODEL):
    page.select_option("#model", model)
    open_details_of(page, "#max-tokens")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#temperature", temperature)


def answer_state(page, column: str = "a") -> dict:
    return page.evaluate(
        """col => {
            const s = document.getElementById('answer-' + col);
            const turns = s.querySelectorAll('.turn.assistant .text');
            const last = turns[turns.length - 1];
            const stats = s.querySelector('.stats');
            return {
                text: last ? last.textContent : null,
                streaming: last ? last.classList.contains('streaming') : false,
                error: last ? last.classList.contains('error') : false,
                done: stats.dataset.done === '1',
                stats: stats.textContent,
                turns: turns.length,
            };
        }""", column)


def wait_answer(page, column: str = "a", timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = answer_state(page, column)
        if st["done"] or st["error"]:
            return st
        assert time.monotonic() < deadline, f"answer {column} not finished after {timeout}s: {st}"
        time.sleep(0.05)


def assert_no_xss(page, where: str):
    assert page.evaluate("() => window.__xss") is None, f"{where}: a <script> from user text ran"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)


def write_docs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "basalt.txt").write_text(
        "Basalt is a dark volcanic rock. Columnar jointing forms when thick basalt lava flows "
        "cool and contract into hexagonal columns, as at the Giant's Causeway.")
    (folder / "granite.txt").write_text(
        "Granite is a coarse-grained plutonic rock made mostly of quartz and feldspar. "
        "It is used for kitchen countertops.")
    (folder / "obsidian.txt").write_text(
        "Obsidian is natural volcanic glass. It forms when felsic lava cools too quickly for "
        "crystals to grow, and breaks with very sharp edges.")


def write_batch_input(path: Path, n: int = 2) -> None:
    with path.open("w") as f:
        for i in range(n):
            body = {"prompt": chatml(f"Say the number {i}."), "max_gen_len": 3, "temperature": 0}
            f.write(json.dumps({"recordId": f"r{i:04d}", "modelInput": body}) + "\n")


def create_guardrail(bedrock, **policies) -> str:
    resp = bedrock.create_guardrail(
        name=unique("console-g"), blockedInputMessaging="BLOCKED-INPUT-BY-GUARDRAIL",
        blockedOutputsMessaging="BLOCKED-OUTPUT-BY-GUARDRAIL", **policies)
    return resp["guardrailId"]


def create_kb_api(bedrock_agent, name: str | None = None, description: str | None = None) -> str:
    extra = {"description": description} if description else {}
    kb = bedrock_agent.create_knowledge_base(
        name=name or unique("console-kb"), roleArn=ROLE,
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED_MODEL}"}},
        storageConfiguration={"type": "BASALT_EMBEDDED"}, **extra)["knowledgeBase"]
    return kb["knowledgeBaseId"]


# --------------------------------------------------------------------------
# Sessions, sign-in, headers
# --------------------------------------------------------------------------


def test_pages_need_a_session(server):
    for path in PAGES + ["/console/guardrails/nosuch", "/console/playground?x=1"]:
        r = http_request(server.port, "GET", path)
        assert r.status == 303, f"GET {path} without a session: expected 303 to sign-in, got {r.status}"
        loc = urllib.parse.urlparse(r.headers.get("location", ""))
        nxt = urllib.parse.parse_qs(loc.query).get("next")
        assert loc.path == "/console/sign-in" and nxt == [path], (
            f"GET {path} without a session: Location {r.headers.get('location')!r}, expected sign-in?next={path}")
    # A forged or expired session cookie is the same as none.
    r = http_request(server.port, "GET", "/console/keys", headers={"Cookie": "basalt_console=" + "0" * 64})
    assert r.status == 303, f"GET /console/keys with an unknown session cookie: HTTP {r.status}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path, body in [("/console/keys", b"name=x&csrf=x"), ("/console/sign-out", b"csrf=x"),
                       ("/console/guardrails", b"name=x"), ("/console/playground/stream", b"{}")]:
        r = http_request(server.port, "POST", path, body, form)
        assert r.status in (401, 303), f"POST {path} without a session: HTTP {r.status} {r.body[:200]!r}"
    # htmx requests are told where to go with HX-Redirect.
    r = http_request(server.port, "POST", "/console/guardrails/x/test", b"text=a", {**form, "HX-Request": "true"})
    assert r.status == 401 and r.headers.get("hx-redirect", "").startswith("/console/sign-in?next="), (
        f"htmx POST without a session: HTTP {r.status}, hx-redirect {r.headers.get('hx-redirect')!r}")
    # The sign-in page and the assets need no session, and carry the security headers.
    r = http_request(server.port, "GET", "/console/sign-in")
    assert r.status == 200, f"GET /console/sign-in: HTTP {r.status}"
    for name, want in [("content-security-policy", "script-src 'self'"), ("x-frame-options", "DENY")]:
        assert want in r.headers.get(name, ""), f"/console/sign-in: header {name} is {r.headers.get(name)!r}"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    r = http_request(server.port, "GET", "/console/assets/console.js")
    assert r.status == 200, f"GET /console/assets/console.js: HTTP {r.status}"
    # An open redirect through ?next= is not followed.
    r = http_request(server.port, "GET", "/console/sign-in?next=https%3A%2F%2Fevil.example%2F")
    assert b"evil.example" not in r.body, "the sign-in form keeps a foreign ?next="


def test_sign_in_bad_credentials(page, server):
    resp = sign_in(page, "bsk-not-a-real-token", expect=401)
    assert page.url.endswith("/console/sign-in"), page.url
    assert "not valid" in (error_text(page) or ""), f"no #page-error on a bad token: {error_text(page)!r}"
    assert not [c for c in page.context.cookies() if c["name"] == "basalt_console"], \
        "a failed sign-in set a session cookie"
    # A real access key with a wrong secret.
    sign_in(page, access_key="AKIAWRONGWRONGWRONG", secret="nope", expect=401)
    assert error_text(page), "no #page-error for a wrong access key / secret"
    # A form post without the sign-in page's double-submit token is refused.
    r = page.request.post("/console/sign-in", form={"token": "x", "csrf": "forged"}, max_redirects=0)
    assert r.status == 403, f"sign-in POST with a forged form token: HTTP {r.status}"


def test_sign_in_and_out(page, admin, server):
    # An unauthenticated visit goes to sign-in and back to where it was going.
    goto(page, "/console/usage?range=1h&by=day")
    assert urllib.parse.urlparse(page.url).path == "/console/sign-in", page.url
    page.fill("#token", admin["bearer_token"])
    submit(page, "#sign-in")
    after = urllib.parse.urlparse(page.url)
    assert (after.path, after.query) == ("/console/usage", "range=1h&by=day"), f"after sign-in: {page.url}"
    assert page.input_value("#by") == "day"
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies.get("basalt_console")
    assert session, f"no basalt_console cookie after sign-in: {list(cookies)}"
    assert session["httpOnly"], "the session cookie is not HttpOnly"
    assert session["sameSite"] == "Strict", f"the session cookie is SameSite={session['sameSite']}"
    assert session["path"] == "/console", f"the session cookie's path is {session['path']}"
    assert page.evaluate("() => document.cookie") == "", "a console cookie is readable from script"
    assert admin["name"] in page.inner_text("header .who"), "the header does not name the signed-in key"
    # Sign out: back at sign-in, and the old cookie no longer opens a page.
    submit(page, "#sign-out")
    assert urllib.parse.urlparse(page.url).path == "/console/sign-in", f"after sign-out: {page.url}"
    goto(page, "/console/models")
    assert "/console/sign-in" in page.url, f"after sign-out /console/models did not redirect: {page.url}"
    r = http_request(server.port, "GET", "/console/models", headers={"Cookie": f"basalt_console={session['value']}"})
    assert r.status == 303, f"the signed-out session's cookie still opens a page: HTTP {r.status}"


def test_sign_in_with_access_key_and_secret(page, user_key):
    sign_in(page, access_key=user_key.access_key_id, secret=user_key.secret_access_key)
    assert urllib.parse.urlparse(page.url).path == "/console", page.url
    assert page.inner_text("#health").strip() == "serving"
    assert user_key.name in page.inner_text("header .who")


def test_security_headers_on_pages(admin_page):
    for path in ["/console", "/console/keys", "/console/playground"]:
        r = goto(admin_page, path)
        h = r.all_headers()
        assert "script-src 'self'" in h.get("content-security-policy", ""), f"{path}: CSP {h.get('content-security-policy')!r}"
        assert h.get("x-frame-options") == "DENY", f"{path}: x-frame-options {h.get('x-frame-options')!r}"
        assert h.get("x-content-type-options") == "nosniff", f"{path}: x-content-type-options"
        assert "no-store" in h.get("cache-control", ""), f"{path}: a signed-in page is cacheable: {h.get('cache-control')!r}"


# --------------------------------------------------------------------------
# CSRF and roles
# --------------------------------------------------------------------------


def test_csrf_forged_token_refused(admin_page, contexts, admin):
    page = admin_page
    goto(page, "/console/keys")
    token = csrf_of(page)
    name = unique("csrf-key")
    r = page.request.post("/console/keys", form={"csrf": "forged", "name": name})
    assert r.status == 403, f"POST /console/keys with csrf=forged: HTTP {r.status}"
    r = page.request.post("/console/keys", form={"name": name})
    assert r.status == 403, f"POST /console/keys without csrf: HTTP {r.status}"
    # A wrong header wins over a right form field.
    r = page.request.post("/console/keys", form={"csrf": token, "name": name}, headers={"x-csrf-token": "0" * 64})
    assert r.status == 403, f"POST /console/keys with a wrong x-csrf-token header: HTTP {r.status}"
    # Another session's token is not this session's.
    other = contexts().new_page()
    sign_in(other, admin["bearer_token"])
    goto(other, "/console/keys")
    other_token = csrf_of(other)
    assert other_token != token, "two sessions share a CSRF token"
    r = page.request.post("/console/keys", form={"csrf": other_token, "name": name})
    assert r.status == 403, f"POST with another session's CSRF token: HTTP {r.status}"
    goto(page, "/console/keys")
    assert name not in page.inner_text("#keys"), "a refused POST created the key anyway"
    # JSON with the header, and the form with the right field, both work.
    r = page.request.post("/console/keys", form={"csrf": token, "name": name})
    assert r.status == 200, f"POST /console/keys with the right token: HTTP {r.status}: {r.text()[:300]}"
    assert 'id="issued-key"' in r.text(), "creating a key with the right token showed no #issued-key"
    r = page.request.post("/console/keys", form={"name": name + "-h"}, headers={"x-csrf-token": token})
    assert r.status == 200 and 'id="issued-key"' in r.text(), f"POST with the right x-csrf-token header: HTTP {r.status}"


def test_non_admin_cannot_open_admin_pages_or_post_their_forms(user_page, admin, contexts):
    page = user_page
    labels = nav_labels(page)
    assert "Keys" not in labels and "Usage" not in labels, f"a non-admin's nav shows admin pages: {labels}"
    assert "Playground" in labels and "Guardrails" in labels, f"nav: {labels}"
    assert page.locator("#chart-traffic").count() == 0, "a non-admin's overview shows the usage charts"
    for path in ["/console/keys", "/console/usage", "/console/usage.csv?range=1h&by=hour"]:
        goto(page, path, status=403)
        assert "administrator" in (error_text(page) or ""), f"{path}: no #page-error for a non-admin: {error_text(page)!r}"
    goto(page, "/console")
    token = csrf_of(page)
    name = unique("by-non-admin")
    r = page.request.post("/console/keys", form={"csrf": token, "name": name, "admin": "on"})
    assert r.status == 403, f"a non-admin's POST /console/keys with a valid CSRF token: HTTP {r.status}"
    r = page.request.post("/console/keys/whatever/revoke", form={"csrf": token})
    assert r.status == 403, f"a non-admin's POST /console/keys/{{id}}/revoke: HTTP {r.status}"
    admin_view = contexts().new_page()
    sign_in(admin_view, admin["bearer_token"], next_path="/console/keys")
    assert name not in admin_view.inner_text("#keys"), "a non-admin's refused POST created a key"
    admin_labels = nav_labels(admin_view)
    assert "Keys" in admin_labels and "Usage" in admin_labels, f"an admin's nav lacks Keys/Usage: {admin_labels}"


# --------------------------------------------------------------------------
# Playground
# --------------------------------------------------------------------------


def test_playground_streams_incrementally(user_page):
    page = user_page
    goto(page, "/console/playground")
    set_playground(page, max_tokens=32)
    page.fill("#prompt", LONG_PROMPT)
    page.click("#send")
    lengths: list[int] = []
    samples = []
    saw_streaming = False
    started = time.monotonic()
    while True:
        st = answer_state(page)
        samples.append((round(time.monotonic() - started, 3), len(st["text"] or ""), st["done"]))
        if st["error"]:
            pytest.fail(f"the playground answer failed: {st}")
        if st["done"]:
            break
        saw_streaming = saw_streaming or st["streaming"]
        n = len(st["text"] or "")
        if n and (not lengths or lengths[-1] != n):
            lengths.append(n)
        assert time.monotonic() - started < 120, f"no answer after 120s: {st}"
        time.sleep(0.05)
    assert len(lengths) >= 2, (
        f"the answer did not render incrementally: distinct non-empty lengths before done {lengths}; "
        f"samples (s, length, done): {samples[:80]}")
    assert saw_streaming, "the assistant bubble never had class 'streaming' while the answer arrived"
    st = answer_state(page)
    assert not st["streaming"], "the bubble still has class 'streaming' after the answer finished"
    assert st["text"].strip(), "empty answer"
    m = STATS_RE.match(st["stats"])
    assert m, f".stats does not read 'N tokens in, M out · latency … · first token … · cost $… · stop: …': {st['stats']!r}"
    assert 1 <= int(m.group(2)) <= 32, f"output tokens {m.group(2)} outside 1..32 (max tokens 32)"
    assert page.inner_text("#answer-a .turn.user .text") == LONG_PROMPT
    assert page.inner_text("#answer-a .model-name") == CHAT_MODEL
    assert page.evaluate("() => document.activeElement.id") == "prompt", "focus did not return to #prompt"
    # A second turn continues the chat; New chat clears it.
    page.fill("#prompt", "Say hello.")
    page.click("#send")
    page.wait_for_function("() => document.querySelectorAll('#answer-a .turn.assistant').length === 2")
    wait_answer(page)
    page.click("#clear")
    assert page.locator("#answer-a .turn").count() == 0, "New chat left turns in the transcript"


def test_playground_compare_mode(user_page):
    page = user_page
    goto(page, "/console/playground")
    assert page.is_disabled("#model-b"), "#model-b is enabled before compare is checked"
    assert page.is_hidden("#answer-b")
    page.check("#compare")
    assert page.is_enabled("#model-b"), "#compare did not enable #model-b"
    assert page.is_visible("#answer-b"), "#compare did not show #answer-b"
    set_playground(page, max_tokens=12)
    options = page.eval_on_selector_all("#model-b option", "os => os.map(o => o.value)")
    other = next((o for o in options if o != CHAT_MODEL), CHAT_MODEL)
    page.select_option("#model-b", other)
    page.fill("#prompt", "What is the capital of France?")
    page.click("#send")
    a, b = wait_answer(page, "a"), wait_answer(page, "b")
    for col, st, model in (("a", a, CHAT_MODEL), ("b", b, other)):
        assert not st["error"], f"compare column {col} ({model}) failed: {st['text']!r}"
        assert st["text"].strip(), f"compare column {col} got an empty answer"
        assert STATS_RE.match(st["stats"]), f"column {col} stats: {st['stats']!r}"
        assert page.inner_text(f"#answer-{col} .model-name") == model


def test_playground_view_api_request(user_page, runtime):
    page = user_page
    goto(page, "/console/playground")
    set_playground(page, max_tokens=5)
    page.fill("#system", "Be brief.")
    page.fill("#prompt", "Name a primary color.")
    assert page.is_hidden("#api-request")
    page.click("#view-code")
    assert page.is_visible("#api-request"), "#view-code did not show #api-request"
    assert page.get_attribute("#view-code", "aria-expanded") == "true"
    boto3_code = page.inner_text("#code-boto3")
    openai_code = page.inner_text("#code-openai")
    curl_code = page.inner_text("#code-curl")
    assert "converse_stream" in boto3_code, f"the boto3 pane does not call converse_stream:\n{boto3_code}"
    assert CHAT_MODEL in boto3_code and CHAT_MODEL in openai_code, "a code pane lacks the model id"
    assert urllib.parse.quote(CHAT_MODEL, safe="") in curl_code or CHAT_MODEL in curl_code, \
        f"the curl pane lacks the model id:\n{curl_code}"
    assert "Name a primary color." in openai_code, "the openai pane lacks the prompt"
    # The boto3 pane's request is real: it runs against the server as shown.
    m = re.search(r"request = json\.loads\((\".*?\")\)\n", boto3_code, re.S)
    assert m, f"no `request = json.loads(...)` in the boto3 pane:\n{boto3_code}"
    request = json.loads(ast.literal_eval(m.group(1)))
    assert request["modelId"] == CHAT_MODEL and request["inferenceConfig"]["maxTokens"] == 5, request
    assert request["system"] == [{"text": "Be brief."}], request
    out = runtime.converse(**request)
    assert out["usage"]["outputTokens"] <= 5
    # The curl body is JSON too.
    m = re.search(r"-d '(.*)'\s*$", curl_code, re.S)
    assert m and json.loads(m.group(1).replace("'\\''", "'"))["messages"], f"curl -d body is not JSON:\n{curl_code}"
    # Typing updates the panes.
    page.fill("#prompt", "A different question?")
    assert "A different question?" in page.inner_text("#code-boto3"), "the code panes do not follow the form"
    page.click("#view-code")
    assert page.is_hidden("#api-request") and page.get_attribute("#view-code", "aria-expanded") == "false"


def test_playground_keyboard(user_page):
    page = user_page
    goto(page, "/console/playground")
    # Settings made without focusing anything, so that Tab starts at the top of the page.
    page.evaluate("""m => { document.getElementById('model').value = m;
        document.getElementById('max-tokens').value = '8';
        document.getElementById('temperature').value = '0'; }""", CHAT_MODEL)
    page.keyboard.press("Tab")
    first = page.evaluate("() => document.activeElement.className")
    assert "skip" in first, f"the first Tab stop is not the skip link (class {first!r})"
    order = []
    for _ in range(60):
        active = page.evaluate("() => document.activeElement.id || document.activeElement.tagName")
        order.append(active)
        if active == "prompt":
            break
        page.keyboard.press("Tab")
    assert order[-1] == "prompt", f"Tab never reached #prompt; focus order: {order}"
    assert order.index("model") < order.index("prompt"), f"focus order: {order}"
    page.keyboard.type("Say hello.")
    page.keyboard.press("Control+Enter")
    st = wait_answer(page)
    assert not st["error"] and st["text"].strip(), f"Ctrl+Enter did not produce an answer: {st}"
    assert page.inner_text("#answer-a .turn.user .text") == "Say hello."
    assert page.evaluate("() => document.activeElement.id") == "prompt", "focus did not return to #prompt"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "send", "Tab from #prompt does not reach #send"
    # Enter on the focused #send with an empty prompt sends nothing.
    page.keyboard.press("Enter")
    time.sleep(0.3)
    assert page.locator("#answer-a .turn.user").count() == 1


def test_playground_error_shows_in_the_bubble(user_page):
    page = user_page
    goto(page, "/console/playground")
    set_playground(page, max_tokens=8)
    # Longer than the test server's context (1024 tokens per request): the API refuses it.
    page.fill("#prompt", "basalt " * 3000)
    page.click("#send")
    st = wait_answer(page, timeout=60)
    assert st["error"], f"a refused request did not mark the bubble with class 'error': {dict(st, text=st['text'][:200])}"
    assert "ValidationException" in st["text"], f"the error bubble does not carry the API's error: {st['text'][:300]!r}"
    assert st["stats"] == "failed" and not st["done"], st
    assert page.is_enabled("#send"), "#send stays disabled after a failed request"


def test_playground_with_guardrail_shows_trace(user_page, bedrock):
    gid = create_guardrail(bedrock, wordPolicyConfig={"wordsConfig": [{"text": "pineapple"}]})
    page = user_page
    goto(page, "/console/playground")
    set_playground(page, max_tokens=12)
    values = page.eval_on_selector_all("#guardrail option", "os => os.map(o => o.value)")
    assert gid in values, f"the new guardrail {gid} is not in #guardrail: {values}"
    page.select_option("#guardrail", gid)
    page.fill("#prompt", "Tell me about pineapple pizza.")
    page.click("#send")
    st = wait_answer(page)
    assert not st["error"], f"the guarded answer failed: {st['text']!r}"
    assert st["text"] == "BLOCKED-INPUT-BY-GUARDRAIL", (
        f"a prompt with a blocked word did not get the guardrail's blocked message: {st['text']!r}")
    assert page.is_visible("#answer-a .trace"), "the guardrail trace <details> stayed hidden"
    page.click("#answer-a .trace summary")
    trace = json.loads(page.inner_text("#answer-a .trace pre"))
    assert "pineapple" in json.dumps(trace), f"the trace does not show the matched word: {trace}"


# --------------------------------------------------------------------------
# Guardrails
# --------------------------------------------------------------------------


def test_guardrail_test_pane_highlights_masked_email(user_page):
    page = user_page
    goto(page, "/console/guardrails")
    open_details_of(page, "#g-name")
    name = unique("console-guard")
    page.fill("#g-name", name)
    page.fill("#g-description", "made by the console test")
    policies = json.loads(page.input_value("#g-policies"))
    assert "sensitiveInformationPolicyConfig" in policies and "wordPolicyConfig" in policies, policies
    submit(page, "#create-guardrail button[type=submit]")
    m = re.fullmatch(r".*/console/guardrails/([A-Za-z0-9]+)", page.url)
    assert m, f"creating a guardrail did not go to its page: {page.url}"
    assert name in page.inner_text("h1")
    assert page.input_value("#test-text") == "Please email jane.doe@example.com the confidential report."
    page.click("#run-test")
    page.wait_for_selector("#test-result #test-action")
    assert page.inner_text("#test-action") == "GUARDRAIL_INTERVENED"
    pii = page.locator("#test-highlighted mark.policy-pii").all_inner_texts()
    words = page.locator("#test-highlighted mark.policy-word").all_inner_texts()
    assert pii == ["jane.doe@example.com"], f"the e-mail is not marked as PII: {pii}; {page.inner_html('#test-highlighted')}"
    assert words == ["confidential"], f"the blocked word is not marked: {words}"
    assert page.inner_text("#test-highlighted") == "Please email jane.doe@example.com the confidential report."
    # The blocked word blocks the input: what passes is the blocked message.
    assert page.inner_text("#test-output") == "Sorry, I cannot answer that.", page.inner_text("#test-output")
    # Without the word, the e-mail is anonymized.
    page.fill("#test-text", "Please email jane.doe@example.com the report.")
    page.check("input[name=source][value=OUTPUT]")
    page.click("#run-test")
    page.wait_for_function("() => !document.querySelector('#test-highlighted mark.policy-word')")
    out = page.inner_text("#test-output")
    assert "jane.doe@example.com" not in out and "{EMAIL}" in out, f"#test-output is not the masked text: {out!r}"
    assert page.inner_text("#test-action") == "GUARDRAIL_INTERVENED"
    # Edit the draft: the saved values come back.
    page.fill("#e-description", "edited by the console test")
    policies = json.loads(page.input_value("#e-policies"))
    assert policies.get("wordPolicyConfig", {}).get("wordsConfig") == [{"text": "confidential"}], (
        f"#e-policies does not show the draft's policies as *Config members: {policies}")
    policies["wordPolicyConfig"]["wordsConfig"] = [{"text": "report"}]
    page.fill("#e-policies", json.dumps(policies))
    submit(page, "#edit-guardrail button[type=submit]")
    assert page.input_value("#e-description") == "edited by the console test", "the edit was not saved"
    assert json.loads(page.input_value("#e-policies"))["wordPolicyConfig"]["wordsConfig"] == [{"text": "report"}]
    # Publish a version: the page shows it.
    submit(page, "#publish-version button[type=submit]")
    assert "version=1" in page.url, f"publishing did not open version 1: {page.url}"
    assert page.locator("a[aria-current=true]", has_text="1").count() == 1
    # Delete, after confirming.
    page.once("dialog", lambda d: d.accept())
    submit(page, "form[action$='/delete'] button[type=submit]")
    assert urllib.parse.urlparse(page.url).path == "/console/guardrails", f"after delete: {page.url}"
    assert name not in page.inner_text("#guardrails"), "the deleted guardrail is still listed"


def test_models_catalog_and_provisioned_throughput(admin_page):
    page = admin_page
    goto(page, "/console/models")
    catalog = page.inner_text("#catalog")
    assert CHAT_MODEL in catalog and EMBED_MODEL in catalog, "#catalog lacks the test models"
    name = unique("console-pt")
    open_details_of(page, "#pt-name")
    page.fill("#pt-name", name)
    page.select_option("#pt-model", CHAT_MODEL)
    page.fill("#pt-units", "1")
    submit(page, "#provision-form button[type=submit]")
    assert error_text(page) is None, f"buying provisioned throughput failed: {error_text(page)!r}"
    row = page.locator("#provisioned tbody tr", has_text=name)
    assert row.count() == 1, f"the new provisioned throughput {name} is not listed"
    assert CHAT_MODEL in row.inner_text()
    page.once("dialog", lambda d: d.accept())
    submit(page, f"#provisioned tbody tr:has-text('{name}') form[action$='/delete'] button")
    assert page.locator("#provisioned tbody tr", has_text=name).count() == 0, "deleted throughput still listed"


# --------------------------------------------------------------------------
# Keys and usage
# --------------------------------------------------------------------------


def test_key_created_once_and_usable(admin_page, contexts, make_client):
    page = admin_page
    goto(page, "/console/keys")
    open_details_of(page, "#key-name")
    name = unique("console-made")
    page.fill("#key-name", name)
    submit(page, "#create-key button[type=submit]")
    assert page.is_visible("#issued-key"), f"no #issued-key after creating a key; error {error_text(page)!r}"
    bearer = page.inner_text("#issued-bearer").strip()
    access = page.inner_text("#issued-access-key").strip()
    secret = page.inner_text("#issued-secret").strip()
    assert bearer and access and secret, (bearer, access, secret)
    # Shown once: a reload shows the list, not the secrets.
    goto(page, "/console/keys")
    html = page.content()
    assert page.locator("#issued-key").count() == 0, "reloading /console/keys shows #issued-key again"
    assert bearer not in html and secret not in html, "a secret of the new key is on the page after a reload"
    row = page.locator("#keys tbody tr", has=page.locator("td.key-name", has_text=name))
    assert row.count() == 1, f"the new key {name} is not listed in #keys"
    assert access in row.inner_text()
    # The bearer token signs in (a fresh browser) and the access key signs requests.
    other = contexts().new_page()
    sign_in(other, bearer)
    assert name in other.inner_text("header .who")
    assert "Keys" not in nav_labels(other), "a key created without Administrator is an admin"
    models = make_client("bedrock", access_key_id=access, secret_access_key=secret).list_foundation_models()
    assert models["modelSummaries"], "the new key's access key cannot call the API"
    # Revoke: dismissing the confirmation keeps the key, accepting revokes it.
    page.once("dialog", lambda d: d.dismiss())
    row.locator("button.revoke").click()
    time.sleep(0.3)
    assert "revoked" not in row.inner_text(), "dismissing the confirmation revoked the key"
    page.once("dialog", lambda d: d.accept())
    with page.expect_navigation():
        row.locator("button.revoke").click()
    row = page.locator("#keys tbody tr", has=page.locator("td.key-name", has_text=name))
    assert "revoked" in row.inner_text(), f"the key is not shown revoked: {row.inner_text()!r}"
    goto(other, "/console/models")
    assert "/console/sign-in" in other.url, "a revoked key's console session still works"


def test_usage_chart_and_csv_have_this_tests_requests(admin_page, create_key, make_client):
    k = create_key(unique("usage-probe"))
    rt = make_client("bedrock-runtime", k)
    for _ in range(2):
        rt.converse(modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 3, "temperature": 0})
    page = admin_page

    def shows_key():
        goto(page, "/console/usage?range=1h&by=hour")
        return k.name in page.inner_text("#usage-table")

    wait_for(shows_key, 20, f"key {k.name} in the usage table")
    row = page.locator("#usage-table tbody tr", has_text=k.name).first.inner_text()
    assert CHAT_MODEL in row, f"the usage row lacks the model: {row!r}"
    assert page.locator("#chart-usage").count() == 1, "no #chart-usage although there is usage"
    page.wait_for_selector("#chart-usage canvas")
    # The filter form.
    page.select_option("#range", "24h")
    page.select_option("#by", "none")
    submit(page, "#usage-filter button[type=submit]")
    q = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert q == {"range": ["24h"], "by": ["none"]}, f"the filter form went to {page.url}"
    assert k.name in page.inner_text("#usage-table")
    href = page.get_attribute("#csv", "href")
    assert href == "/console/usage.csv?range=24h&by=none", f"#csv href {href!r}"
    r = page.request.get(href)
    assert r.status == 200 and r.headers["content-type"].startswith("text/csv"), (r.status, r.headers)
    rows = list(csv.reader(io.StringIO(r.text())))
    assert rows[0][0] == "bucket_start_ms", f"CSV header: {rows[0]}"
    mine = [dict(zip(rows[0], row)) for row in rows[1:] if k.name in row]
    assert mine, f"the CSV has no row for {k.name}: {rows[:5]}"
    assert sum(int(m["invocations"]) for m in mine) == 2, mine


def test_overview_health_charts_and_usage_table(admin_page, create_key, make_client):
    k = create_key(unique("overview-probe"))
    make_client("bedrock-runtime", k).converse(
        modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 2})
    page = admin_page

    def shows_key():
        goto(page, "/console")
        return k.name in page.inner_text("main")

    wait_for(shows_key, 20, f"key {k.name} in the overview's usage table")
    assert page.inner_text("#health").strip() == "serving"
    for chart in ("#chart-traffic", "#chart-tokens", "#chart-latency"):
        page.wait_for_selector(f"{chart} canvas", timeout=10_000)
    # The charts hold the requests just made (they are in the current minute).
    traffic = json.loads(page.get_attribute("#chart-traffic", "data-chart"))
    tokens = json.loads(page.get_attribute("#chart-tokens", "data-chart"))
    requests = sum(traffic["series"][0]["values"])
    assert requests >= 1 and sum(tokens["series"][0]["values"]) >= 1, (
        f"#chart-traffic counts {requests} requests in the last hour although the table lists this "
        f"test's request; last x {traffic['x'][-1]} (now {time.time():.0f}), "
        f"last values {traffic['series'][0]['values'][-3:]}")


# --------------------------------------------------------------------------
# Knowledge bases and batch
# --------------------------------------------------------------------------


def test_kb_create_ingest_and_retrieve(user_page, batch_root):
    folder = batch_root / unique("console-docs")
    write_docs(folder)
    page = user_page
    goto(page, "/console/knowledge-bases")
    open_details_of(page, "#kb-name")
    name = unique("console-kb")
    page.fill("#kb-name", name)
    page.select_option("#kb-model", EMBED_MODEL)
    page.fill("#kb-description", "rocks")
    submit(page, "#create-kb button[type=submit]")
    assert re.search(r"/console/knowledge-bases/[A-Za-z0-9]+$", page.url), f"after creating a KB: {page.url}"
    assert name in page.inner_text("h1")
    open_details_of(page, "#ds-name")
    page.fill("#ds-name", "rocks-folder")
    page.select_option("#ds-kind", "FOLDER")
    page.fill("#ds-location", str(folder))
    submit(page, "#create-ds button[type=submit]")
    ds = page.locator("article.data-source")
    assert ds.count() == 1, f"the data source is not listed; error {error_text(page)!r}"
    assert folder.as_uri() in ds.inner_text(), f"the data source does not show its folder: {ds.inner_text()!r}"
    submit(page, "article.data-source button.sync")
    job = page.locator(".ingestion-job")
    job.wait_for(timeout=10_000)
    page.wait_for_selector('.ingestion-job[data-status="COMPLETE"], .ingestion-job[data-status="FAILED"]',
                           timeout=120_000)
    status = job.get_attribute("data-status")
    assert status == "COMPLETE", f"ingestion ended {status}: {job.inner_text()}"
    stats = job.inner_text()
    assert "scanned 3" in stats and "new 3" in stats and "failed 0" in stats, f"ingestion statistics: {stats!r}"
    # Retrieve.
    page.fill("#kb-query", "How do hexagonal columns form in lava?")
    page.fill("#kb-n", "2")
    page.click("#kb-retrieve")
    page.wait_for_selector("#retrieved .result")
    chunks = page.locator("#retrieved .result .chunk").all_inner_texts()
    assert 1 <= len(chunks) <= 2, f"asked for 2 results, got {len(chunks)}"
    assert "Columnar jointing" in chunks[0], f"the best chunk is not basalt's: {chunks}"
    # Retrieve and generate, with citations linked to their sources.
    page.fill("#kb-query", "What is basalt?")
    page.select_option("#kb-model-g", CHAT_MODEL)
    page.click("#kb-generate")
    page.wait_for_selector("#generated .answer-text", timeout=120_000)
    answer = page.inner_text("#generated .answer-text")
    assert answer.strip(), "RetrieveAndGenerate showed an empty answer"
    links = page.locator("#generated a.citation")
    for i in range(links.count()):
        target = links.nth(i).get_attribute("href")
        assert page.locator(target).count() == 1, f"citation link {target} points nowhere"
    if links.count():
        assert page.locator("#citation-1 blockquote").count() >= 1, "citation 1 lists no source"
    else:
        assert page.locator("#generated .citation-refs").count() == 0


def test_batch_job_submit_to_completed(user_page, batch_root):
    work = batch_root / unique("console-batch")
    work.mkdir()
    inp, out = work / "records.jsonl", work / "out"
    write_batch_input(inp, 2)
    page = user_page
    goto(page, "/console/batch")
    open_details_of(page, "#b-name")
    name = unique("console-job")
    page.fill("#b-name", name)
    options = page.eval_on_selector_all("#b-model option", "os => os.map(o => o.value)")
    assert CHAT_MODEL in options, (
        f"the batch form's model select #b-model does not offer {CHAT_MODEL} (options: {options}); "
        "the batch API accepts it")
    page.select_option("#b-model", CHAT_MODEL)
    page.select_option("#b-type", "InvokeModel")
    page.fill("#b-input", inp.as_uri())
    page.fill("#b-output", out.as_uri() + "/")
    submit(page, "#submit-batch button[type=submit]")
    assert "/console/batch/" in page.url, f"submitting a batch job went to {page.url}; error {error_text(page)!r}"
    assert name in page.inner_text("h1")
    page.wait_for_selector('#batch-status[data-status="Completed"], #batch-status[data-status="Failed"], '
                           '#batch-status[data-status="PartiallyCompleted"]', timeout=300_000)
    status = page.get_attribute("#batch-status", "data-status")
    assert status == "Completed", f"the batch job ended {status}: {page.inner_text('#job-live')}"
    assert page.inner_text("#batch-output") == out.as_uri() + "/"
    assert "2 processed of 2" in page.inner_text("#job-live"), page.inner_text("#job-live")
    job_id = page.inner_text("#job-live code").rsplit("/", 1)[1]
    lines = (out / job_id / "records.jsonl.out").read_text().splitlines()
    assert len(lines) == 2, f"the job's output has {len(lines)} lines"
    row = find_in_pages(page, "/console/batch", "#batch-jobs", name)
    assert "Completed" in row.inner_text() and "2 / 2" in row.inner_text(), row.inner_text()


# --------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent_id(bedrock_agent):
    """A prepared agent on the local chat model, answering in a few tokens."""
    agent = bedrock_agent.create_agent(
        agentName=unique("console-agent"), foundationModel=CHAT_MODEL, agentResourceRoleArn=ROLE,
        instruction="You are a helpful assistant. Answer in one short sentence.", idleSessionTTLInSeconds=600,
        promptOverrideConfiguration={"promptConfigurations": [{
            "promptType": "ORCHESTRATION", "promptCreationMode": "DEFAULT",
            "inferenceConfiguration": {"maximumLength": 16, "temperature": 0.0, "topP": 1.0, "topK": 1,
                                       "stopSequences": []}}]})["agent"]
    bedrock_agent.prepare_agent(agentId=agent["agentId"])
    wait_for(lambda: bedrock_agent.get_agent(agentId=agent["agentId"])["agent"]["agentStatus"] != "PREPARING",
             30, "the agent to be prepared")
    return agent["agentId"]


def test_agent_page_test_chat_with_trace(user_page, agent_id):
    page = user_page
    row = find_in_pages(page, "/console/agents", "#agents", agent_id)
    with page.expect_navigation():
        row.locator(f"a[href='/console/agents/{agent_id}']").click()
    assert page.locator("#agent-test").count() == 1
    page.fill("#agent-text", "Say hello.")
    page.click("#agent-send")
    turn = page.locator("#agent-turns .agent-turn").first
    turn.wait_for(timeout=120_000)
    errors = turn.locator(".error").all_inner_texts()
    assert not errors, f"the agent turn shows errors: {errors}"
    assert turn.locator(".agent-answer").inner_text().strip(), "the agent's answer is empty"
    viewer = turn.locator("details.trace-viewer")
    assert viewer.count() == 1, "no trace viewer"
    assert re.search(r"Trace: [1-9]\d* step", viewer.locator("summary").first.inner_text()), \
        viewer.locator("summary").first.inner_text()


def test_agent_created_and_prepared_in_the_console(user_page, bedrock_agent):
    page = user_page
    name = unique("console-made-agent")
    goto(page, "/console/agents")
    open_details_of(page, "#a-name")
    page.fill("#a-name", name)
    page.select_option("#a-model", CHAT_MODEL)
    submit(page, "#create-agent button[type=submit]")
    assert re.search(r"/console/agents/[^/?]+$", page.url), f"not on the agent's page: {page.url}"
    agent_id = page.url.rsplit("/", 1)[1]
    assert bedrock_agent.get_agent(agentId=agent_id)["agent"]["agentName"] == name, \
        "the console created the agent through the API"
    open_details_of(page, "#ag-name")
    page.fill("#ag-name", "orders")
    submit(page, "#add-action-group button[type=submit]")
    groups = bedrock_agent.list_agent_action_groups(agentId=agent_id, agentVersion="DRAFT")["actionGroupSummaries"]
    assert [g["actionGroupName"] for g in groups] == ["orders"], groups
    group = bedrock_agent.get_agent_action_group(agentId=agent_id, agentVersion="DRAFT",
                                                 actionGroupId=groups[0]["actionGroupId"])["agentActionGroup"]
    assert group["actionGroupExecutor"] == {"customControl": "RETURN_CONTROL"}, group
    assert group["functionSchema"]["functions"][0]["name"] == "get_order", group
    submit(page, "#prepare-agent button[type=submit]")
    wait_for(lambda: bedrock_agent.get_agent(agentId=agent_id)["agent"]["agentStatus"] == "PREPARED",
             30, "the agent prepared from the console")
    goto(page, f"/console/agents/{agent_id}")
    assert "PREPARED" in page.inner_text("main")
    assert "orders" in page.inner_text("main")
    page.once("dialog", lambda d: d.accept())
    submit(page, f"form[action='/console/agents/{agent_id}/delete'] button[type=submit]")
    assert page.url.endswith("/console/agents"), page.url
    with pytest.raises(ClientError) as e:
        bedrock_agent.get_agent(agentId=agent_id)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


# --------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------


def test_user_text_is_escaped(admin_page, bedrock_agent):
    page = admin_page
    # A key name.
    goto(page, "/console/keys")
    open_details_of(page, "#key-name")
    page.fill("#key-name", XSS)
    submit(page, "#create-key button[type=submit]")
    assert_no_xss(page, "keys page after creating a key named with <script>")
    assert XSS in page.inner_text("#issued-key h2"), "the key's name is not shown as text"
    goto(page, "/console/keys")
    assert_no_xss(page, "keys list")
    assert page.locator("#keys td.key-name", has_text=XSS).count() >= 1, "the key's name is not listed as text"
    # A guardrail: an invalid name comes back in the form, a description is shown as text.
    goto(page, "/console/guardrails")
    open_details_of(page, "#g-name")
    page.fill("#g-name", XSS)
    r = submit(page, "#create-guardrail button[type=submit]", status=(200, 400))
    assert_no_xss(page, "guardrails page after an invalid name")
    assert error_text(page), f"an invalid guardrail name gave no error (HTTP {r.status})"
    assert page.input_value("#g-name") == XSS, "the refused form did not keep the name as typed"
    page.fill("#g-name", unique("escaped"))
    page.fill("#g-description", XSS)
    page.fill("#g-blocked-input", XSS)
    submit(page, "#create-guardrail button[type=submit]")
    assert_no_xss(page, "guardrail page")
    assert page.input_value("#e-description") == XSS and page.input_value("#e-in") == XSS
    page.fill("#test-text", XSS + " confidential")
    page.click("#run-test")
    page.wait_for_selector("#test-action")
    assert_no_xss(page, "guardrail test result")
    assert XSS in page.inner_text("#test-highlighted")
    assert page.inner_text("#test-output") == XSS, "the blocked message is not shown as text"
    goto(page, "/console/guardrails")
    assert_no_xss(page, "guardrails list")
    assert XSS in page.inner_text("#guardrails"), "the description is not listed as text"
    # A knowledge base description.
    kb = create_kb_api(bedrock_agent, description=XSS)
    goto(page, f"/console/knowledge-bases/{kb}")
    assert_no_xss(page, "knowledge base page")
    assert XSS in page.inner_text("main > p")
    goto(page, "/console/knowledge-bases")
    assert_no_xss(page, "knowledge bases list")
    # The playground shows prompts as text.
    goto(page, "/console/playground")
    set_playground(page, max_tokens=2)
    page.fill("#prompt", XSS)
    page.click("#send")
    wait_answer(page)
    assert_no_xss(page, "playground")
    assert page.inner_text("#answer-a .turn.user .text") == XSS


# --------------------------------------------------------------------------
# Every page: screenshot, accessibility, sizes, server time
# --------------------------------------------------------------------------


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS_ROOT / ".gitignore"
    if not os.environ.get("BASALT_TEST_ARTIFACTS") and not ignore.exists():
        ignore.write_text("*\n")
    return ARTIFACTS


def _axe(page) -> list[dict]:
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is not installed at {AXE_JS}: run `npm ci` in {AXE_JS.parents[2]} "
                    "(scripts/test.sh does)")
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        # Evaluated rather than added as a <script>: the console's CSP refuses inline scripts.
        page.evaluate(AXE_JS.read_text() + "\n;undefined")
    return page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")


def _load(context, path: str, cdp_events: bool = True) -> dict:
    """Loads `path` in a new page of `context`; returns bytes of every response body,
    and the asset requests that went to the network (not served from cache)."""
    page = context.new_page()
    responses = []
    page.on("response", lambda r: responses.append(r))
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    net: dict[str, dict] = {}
    cached: set[str] = set()
    cdp.on("Network.responseReceived", lambda e: net.__setitem__(e["requestId"], e))
    cdp.on("Network.requestServedFromCache", lambda e: cached.add(e["requestId"]))
    wire: dict[str, float] = {}
    cdp.on("Network.loadingFinished", lambda e: wire.__setitem__(e["requestId"], e.get("encodedDataLength", 0)))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    r = page.goto(path)
    page.wait_for_load_state("networkidle")
    total = 0
    for resp in responses:
        try:
            total += len(resp.body())
        except Exception:  # redirects have no body
            pass
    from_network = sorted(
        e["response"]["url"] for rid, e in net.items()
        if "/console/assets/" in e["response"]["url"] and rid not in cached
        and not e["response"].get("fromDiskCache") and not e["response"].get("fromPrefetchCache"))
    assets_seen = sorted(e["response"]["url"] for e in net.values() if "/console/assets/" in e["response"]["url"])
    return {"page": page, "status": r.status if r else None, "bytes": total,
            "transferred": int(sum(wire.values())), "from_network": from_network,
            "assets_seen": assets_seen, "errors": errors}


def test_every_page_screenshot_and_accessibility(admin_page, contexts, bedrock, bedrock_agent, agent_id,
                                                 batch_root, make_client, key):
    out_dir = _artifacts()
    # Something on every page: a guardrail, a KB, a batch job, usage.
    gid = create_guardrail(bedrock, wordPolicyConfig={"wordsConfig": [{"text": "secret"}]})
    kb = create_kb_api(bedrock_agent, description="screenshot KB")
    work = batch_root / unique("shot-batch")
    work.mkdir()
    write_batch_input(work / "in.jsonl", 2)
    job = bedrock.create_model_invocation_job(
        jobName=unique("shot-job"), roleArn=ROLE, modelId=CHAT_MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": (work / "in.jsonl").as_uri()}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": (work / "out").as_uri() + "/"}})["jobArn"]
    wait_for(lambda: bedrock.get_model_invocation_job(jobIdentifier=job)["status"] in
             ("Completed", "PartiallyCompleted", "Failed", "Stopped"), 300, "the screenshot batch job")
    make_client("bedrock-runtime", key).converse(
        modelId=CHAT_MODEL, messages=[user_msg("Hi")], inferenceConfig={"maxTokens": 2})
    pages = {
        "overview": "/console",
        "playground": "/console/playground",
        "models": "/console/models",
        "keys": "/console/keys",
        "usage": "/console/usage",
        "guardrails": "/console/guardrails",
        "guardrail": f"/console/guardrails/{gid}",
        "knowledge-bases": "/console/knowledge-bases",
        "knowledge-base": f"/console/knowledge-bases/{kb}",
        "batch": "/console/batch",
        "batch-job": "/console/batch/" + urllib.parse.quote(job, safe=""),
        "agents": "/console/agents",
        "agent": f"/console/agents/{agent_id}",
        "customization": "/console/customization",
    }
    cookies = [c for c in admin_page.context.cookies() if c["name"] == "basalt_console"]
    assert cookies, "the admin page has no session cookie"
    failures: list[str] = []
    perf: dict[str, dict] = {}
    for label, path in pages.items():
        ctx = contexts()  # empty cache for the first load
        ctx.add_cookies(cookies)
        first = _load(ctx, path)
        page = first["page"]
        if first["status"] != 200:
            failures.append(f"{label} {path}: HTTP {first['status']}; {error_text(page)!r}")
            continue
        if "/console/sign-in" in page.url:
            failures.append(f"{label} {path}: redirected to sign-in")
            continue
        if page.locator("#page-error").count():
            failures.append(f"{label} {path}: shows #page-error {error_text(page)!r}")
        if page.locator(".chart[data-chart]").count():
            try:
                page.wait_for_selector(".chart canvas", timeout=5_000)
            except Exception:
                failures.append(f"{label} {path}: a .chart has no <canvas> (uPlot did not draw)")
        page.screenshot(path=str(out_dir / f"{label}.png"), full_page=True)
        if first["errors"]:
            failures.append(f"{label} {path}: script errors / CSP violations: {first['errors']}")
        violations = _axe(page)
        bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
        for v in bad:
            targets = [n["target"] for n in v["nodes"]][:8]
            failures.append(f"{label} {path}: axe {v['id']} ({v['impact']}): {v['help']}; nodes {targets}")
        minor = [f"{v['id']} ({v['impact']})" for v in violations if v not in bad]
        # The repeat load, same context: the assets come from the cache.
        second = _load(ctx, path)
        if second["from_network"]:
            failures.append(f"{label} {path}: the repeat load fetched assets from the network: {second['from_network']}")
        if first["bytes"] >= MAX_FIRST_LOAD_BYTES:
            failures.append(f"{label} {path}: first load {first['bytes']} bytes >= {MAX_FIRST_LOAD_BYTES}")
        # Server time of the page's GET (warm).
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            resp = page.request.get(path, max_redirects=0)
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                failures.append(f"{label} {path}: repeated GET answered HTTP {resp.status}")
                break
        times.sort()
        perf[label] = {
            "path": path,
            "first_load_bytes": first["bytes"],
            "first_load_transferred_bytes": first["transferred"],
            "first_load_assets": len(first["assets_seen"]),
            "repeat_assets_from_network": len(second["from_network"]),
            "repeat_assets_seen": len(second["assets_seen"]),
            "server_ms_p50": round(statistics.median(times), 2),
            "server_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
            "axe_minor_moderate": minor,
        }
    (out_dir / "perf.json").write_text(json.dumps(perf, indent=2))
    print(f"\n{'page':16} {'first load B':>12} {'on the wire':>11} {'assets':>6} {'repeat net':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for label, p in perf.items():
        print(f"{label:16} {p['first_load_bytes']:>12} {p['first_load_transferred_bytes']:>11} {p['first_load_assets']:>6} "
              f"{p['repeat_assets_from_network']:>10} {p['server_ms_p50']:>8} {p['server_ms_p99']:>8}")
    print(f"screenshots and perf.json in {out_dir}")
    assert not failures, "console pages failed checks:\n" + "\n".join(failures)
