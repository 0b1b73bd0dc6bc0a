"""Screenshots of rnnkit's pages for the docs, in Debian's headless chromium through Playwright.

    python docs/screenshot.py PAGE.html OUT.png [--unit 1:111] [--hover 120] [--width 1280] [--height 900]
                              [--full] [--gates]

``--unit`` picks a unit of the cell view, ``--hover`` points at the character (or word) with that index,
``--gates`` shoots the gate-saturation section instead of the top of the page. The page is opened from
disk; any request it made would be refused and reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page")
    ap.add_argument("out")
    ap.add_argument("--unit", help="LAYER:UNIT to show in the cell view")
    ap.add_argument("--hover", type=int, help="index of the character or word to point at")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=860)
    ap.add_argument("--full", action="store_true", help="the whole page, not the first screen")
    ap.add_argument("--gates", action="store_true", help="the gate-saturation section")
    a = ap.parse_args()
    url = Path(a.page).resolve().as_uri()
    refused = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": a.width, "height": a.height}, device_scale_factor=1)
        page.route("**/*", lambda r: r.continue_() if r.request.url == url else (refused.append(r.request.url), r.abort()))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        if a.unit:
            value = page.evaluate("(name) => Array.from(document.querySelectorAll('#unit option'))"
                                  ".find(o => o.textContent.startsWith('unit ' + name + ' ')).value", a.unit)
            page.select_option("#unit", value)
        if a.hover is not None:
            page.locator("#text .c, #text .w").nth(a.hover).hover()
        if a.gates:
            page.locator("section.gates").screenshot(path=a.out)
        else:
            page.screenshot(path=a.out, full_page=a.full)
        browser.close()
    if refused:
        print(f"the page asked for {refused}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
