"""The pages in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download):
they render, request nothing, show hostile text literally, and the unit picker recolours the text.
Screenshots go to ``test-artifacts/`` (or ``$RNNKIT_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rnnkit.runs import load, load_classifier
from rnnkit.viz.page import classifier_page, describe_model, lm_page
from rnnkit.viz.reading import read
from rnnkit.viz.trace import trace_lm

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("RNNKIT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
HOSTILE = 'He said "<script>alert(1)</script>" & left (quietly).\n'

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (the test extra)")
if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium) to run "
                f"the browser tests", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    """The page opened from disk, with every request it makes counted (and any but its own refused)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, errors = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def route(r):
        requests.append(r.request.url)
        r.continue_() if r.request.url == path.as_uri() else r.abort()
    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    return page, requests, errors


def test_lm_page_renders_offline_and_the_picker_recolours(browser, lm_run, tmp_path, shakespeare_text):
    lm = load(lm_run)
    text = HOSTILE + shakespeare_text[:1500]
    tr = trace_lm(lm.model, lm.vocab, text)
    path = tmp_path / "scene.html"
    path.write_text(lm_page(tr, lm.vocab.chars, describe_model(lm.run, str(lm_run), lm.weights.name), 8,
                            source="scene.txt"), encoding="utf-8")
    page, requests, errors = open_page(browser, path)
    try:
        assert requests == [path.as_uri()] and not errors, (requests, errors)
        assert page.evaluate("document.scripts.length") == 2                 # no script from the text
        shown = page.inner_text("#text")
        assert '"<script>alert(1)</script>" & left' in shown.replace("↵", "")
        spans = page.locator("#text .c")
        assert spans.count() == len(text)
        colours = lambda: page.evaluate("Array.from(document.querySelectorAll('#text .c')).slice(0, 400)"
                                        ".map(s => s.style.backgroundColor).join('|')")
        surprisal = colours()
        page.select_option("#unit", "0")
        first = colours()
        page.select_option("#unit", "3")
        assert first != surprisal and colours() != first
        assert page.is_checked("#mode-unit")
        spans.nth(120).hover()
        assert "top predictions" in page.inner_text("#hover") and "unit " in page.inner_text("#hover")
        assert page.locator("svg.scatter").count() == 2                        # one per layer
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viz-lm.png"), full_page=True)
    finally:
        page.close()


def test_classifier_page_renders_offline(browser, classifier_run, tmp_path):
    clf = load_classifier(classifier_run)
    path = tmp_path / "review.html"
    rd = read(clf, "A joy to watch, brilliant and funny. " + HOSTILE)
    path.write_text(classifier_page(rd, describe_model(clf.run, str(classifier_run), clf.weights.name)),
                    encoding="utf-8")
    page, requests, errors = open_page(browser, path)
    try:
        assert requests == [path.as_uri()] and not errors, (requests, errors)
        assert page.evaluate("document.scripts.length") == 2
        assert "<script>alert(1)</script>" in page.inner_text("#text")
        assert page.locator("#text .w").count() == len(rd.words)
        page.locator("#text .w").nth(1).hover()
        assert "joy" in page.inner_text("#hover")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viz-classifier.png"), full_page=True)
    finally:
        page.close()
