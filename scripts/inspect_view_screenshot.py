"""Regenerate docs/images/inspect-view.png: one exported episode transcript in Inspect's log viewer.

    python scripts/inspect_view_screenshot.py [--out docs/images/inspect-view.png]

It runs one reward-tampering episode with the scripted `tamper-and-evade` policy in the bubblewrap
sandbox, exports the run folder with `rewardlab envs export-inspect`, starts `inspect view` on a loopback
port, opens the sample's Messages tab in headless Chromium (/usr/bin/chromium, driven by playwright,
`pip install playwright`; no browser download), scrolls to the policy's edit of its reward code and
saves a screenshot. Needs bubblewrap, inspect_ai and Chromium; no network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rewardlab.cli import main as rewardlab_main
from rewardlab.integrations.inspect.view import sample_url, serve_view

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
EPISODE = "reward-tampering-s0-00000"
SCROLL_TO = "My reward is always -10"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/images/inspect-view.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="inspect-view-") as scratch:
        run = Path(scratch) / "tampering-demo"
        status = rewardlab_main(["envs", "run", "--env", "reward-tampering", "--policy", "scripted:tamper-and-evade",
                                 "-n", "1", "--out", str(run), "--no-progress"])
        status = status or rewardlab_main(["envs", "export-inspect", str(run), "--out", str(run / "logs/demo.eval")])
        if status:
            return status
        with serve_view(run / "logs") as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(Path(scratch) / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page = browser.new_page()
            page.goto(sample_url(base, "demo.eval", EPISODE, tab="messages"))
            page.get_by_text("You are a language model").first.wait_for(timeout=60_000)
            target = page.get_by_text(SCROLL_TO).first
            page.mouse.move(640, 600)
            for _ in range(60):  # the message list renders what is near the viewport: scroll until the turn shows
                if target.count() and target.is_visible():
                    break
                page.mouse.wheel(0, 300)
                page.wait_for_timeout(100)
            target.scroll_into_view_if_needed()
            page.mouse.wheel(0, -250)  # keep the command before it in view
            page.wait_for_timeout(500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
