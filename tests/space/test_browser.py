"""End to end in a real headless browser (Debian's chromium driven by Playwright): the Space served
against an embedded Hub holding a small published experiment; a question, answers from two
models, the leaderboard. `make test` installs chromium when it can (root: apt-get)."""
from __future__ import annotations

import shutil
import tempfile

import pytest

from toolkit.space.app import build_demo
from toolkit.space.settings import SpaceSettings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture
def browser_page(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}: `make test` installs it as root (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(   # a fresh --user-data-dir
            tempfile.mkdtemp(dir=tmp_path), executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1400, "height": 1100})
        yield context.new_page()
        context.close()


def test_compare_two_models_and_see_the_leaderboard(experiment, browser_page, free_port, tmp_path):
    demo = build_demo(SpaceSettings(endpoint=experiment.url, author="alice", max_new_tokens=48))
    demo.launch(server_name="127.0.0.1", server_port=free_port, prevent_thread_lock=True, quiet=True)
    page = browser_page
    try:
        page.goto(f"http://127.0.0.1:{free_port}/")
        page.wait_for_selector("#question textarea", timeout=60_000)
        page.fill("#question textarea", "Tom has 3 apples and buys 4 more. How many apples does he have?")
        page.click("#compare")
        page.wait_for_function("""() => [0, 1].every(i => {
                const e = document.querySelector('#answer-' + i);
                return e && e.innerText.includes('Final answer'); })""", timeout=180_000)
        answers = [page.inner_text(f"#answer-{i}") for i in (0, 1)]
        assert answers[0].startswith("base") and answers[1].startswith("oracle_refine")
        assert not page.is_visible("#answer-2")
        shot = tmp_path / "space-compare.png"
        page.screenshot(path=str(shot), full_page=True)
        page.get_by_role("tab", name="Leaderboard").click()
        page.wait_for_selector("#leaderboard", timeout=10_000)
        page.wait_for_function("document.querySelector('#leaderboard').innerText.includes('3/20')",
                               timeout=10_000)
        board = page.inner_text("#leaderboard")
        for needle in ("base (no LoRA)", "rft", "oracle_refine", "3/20", "1/20", experiment.adapters["rft"]):
            assert needle in board, needle
        board_shot = tmp_path / "space-leaderboard.png"
        page.screenshot(path=str(board_shot), full_page=True)
        page.get_by_role("tab", name="The paradox").click()
        page.wait_for_selector("#paradox", timeout=10_000)
        print(f"\nscreenshots: {shot} {board_shot}")
    finally:
        demo.close()


def test_configs_and_details_tabs_on_a_real_studys_hub(study_hub, browser_page, free_port, tmp_path):
    """The Hub a real `qup study` published: the Configs tab shows both models' protocols side by
    side (same protocol: comparable), the Details tab both models' outputs per problem, marked."""
    from toolkit.prompts import load_prompt
    demo = build_demo(SpaceSettings(endpoint=study_hub, author="qup", max_new_tokens=32))
    demo.launch(server_name="127.0.0.1", server_port=free_port, prevent_thread_lock=True, quiet=True)
    page = browser_page
    try:
        page.goto(f"http://127.0.0.1:{free_port}/")
        page.get_by_role("tab", name="Leaderboard").click()
        page.wait_for_function("document.querySelector('#leaderboard') && "
                               "document.querySelector('#leaderboard').innerText.includes('pass@1 (n=2')",
                               timeout=30_000)
        page.get_by_role("tab", name="Configs").click()
        page.wait_for_selector("#configs", timeout=10_000)
        page.wait_for_function("document.querySelector('#configs').innerText.includes('prompt_sha256')",
                               timeout=10_000)
        grid = page.inner_text("#configs")
        for needle in ("base", "self · seed 0", load_prompt("math_cot").id, "math_verify", "transformers",
                       '"greedy": false', "adapter_revision", "sha256:"):
            assert needle in grid, needle
        assert "Same protocol" in page.inner_text("#config-warning")
        page.screenshot(path=str(tmp_path / "space-configs.png"), full_page=True)
        page.get_by_role("tab", name="Details").click()
        page.wait_for_selector("#details", timeout=10_000)
        page.wait_for_function("document.querySelector('#details-note').innerText.includes('4 problems')",
                               timeout=10_000)
        details = page.inner_text("#details")
        assert "✗" in details or "✓" in details
        assert "A output" in details and "B output" in details
        note = page.inner_text("#details-note")
        assert "base" in note and "self · seed 0" in note and "they differ on" in note
        page.screenshot(path=str(tmp_path / "space-details.png"), full_page=True)
        page.get_by_role("tab", name="The paradox").click()       # the study's own report, as published
        page.wait_for_selector("#study-report", timeout=10_000)
        report = page.inner_text("#study-report")
        for needle in ("Findings", "Verdict: the paradox", "Spearman", "Paradox table", "Compute"):
            assert needle in report, needle
        page.screenshot(path=str(tmp_path / "space-report.png"), full_page=True)
        print(f"\nscreenshots: {tmp_path / 'space-configs.png'} {tmp_path / 'space-details.png'} "
              f"{tmp_path / 'space-report.png'}")
    finally:
        demo.close()
