"""The playground in a real headless Chromium (Debian's ``chromium`` through Playwright): greedy generation
streams in several chunks and equals the library's text, the classifier's label follows the typing, and
the page asks nothing of any other origin. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from live import running
from rnnkit.config import SampleConfig
from rnnkit.inference.sampling import generate
from rnnkit.runs import load

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("RNNKIT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (the test extra)")
if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium) to run "
                f"the browser tests", allow_module_level=True)


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression (the page's policy forbids the eval behind wait_for_function)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def test_the_playground_streams_greedy_text_and_classifies_as_one_types(lm_run, classifier_run):
    lm = load(lm_run)
    expected = generate(lm.model, lm.vocab, SampleConfig(prompt="ROMEO:", length=300, temperature=0))[0]
    with running([lm_run, classifier_run]) as (url, _), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        foreign, errors = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))

        def route(r):
            if r.request.url.startswith(url + "/"):
                r.continue_()
            else:
                foreign.append(r.request.url)
                r.abort()
        page.route("**/*", route)
        try:
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']")
            wait_until(page, "document.querySelectorAll('#model option').length === 2")
            page.select_option("#model", "lm")
            page.fill("#prompt", "ROMEO:")
            for name, value in (("temperature", "0"), ("length", "300")):
                page.eval_on_selector(f"#{name}", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }",
                                      value)
            page.click("#go")
            page.wait_for_selector("#out[data-done='1']", timeout=30_000)
            assert page.inner_text("#out") == "ROMEO:" + expected
            assert int(page.get_attribute("#out", "data-chunks")) > 1          # it arrived in pieces
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "playground-generate.png"))
            page.click("#score")
            wait_until(page, "document.querySelectorAll('#out span.s').length > 100")
            assert "bits/char" in page.inner_text("#status")
            page.select_option("#model", "clf")
            page.fill("#review", "a joy to watch, brilliant and funny")
            wait_until(page, "/\\((0|1)\\.\\d{3}\\)/.test(document.getElementById('label').textContent)")
            assert page.inner_text("#label").split()[0] in ("pos", "neg")
            page.screenshot(path=str(ARTIFACTS / "playground-classify.png"))
            assert not foreign and not errors, (foreign, errors)
        finally:
            browser.close()
