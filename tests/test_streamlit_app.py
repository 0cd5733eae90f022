"""The Streamlit example: AppTest in-process, and a real browser (Playwright + Chromium)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langchain_setraf.cache import ModelCache

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "streamlit_app.py"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture()
def app(monkeypatch: pytest.MonkeyPatch, ert_dir: Path):  # type: ignore[no-untyped-def]
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SETRAF_ERT_DIR", str(ert_dir))
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_five_reruns_load_once_and_unload_gives_memory_back(app, cache: ModelCache) -> None:  # type: ignore[no-untyped-def]
    assert app.selectbox(key="backend").options[:2] == ["gguf", "transformers"]
    app.selectbox(key="sample").set_value("two_layer_wenner.dat").run()
    app.button(key="interpret").click().run()
    assert not app.exception, app.exception
    assert app.session_state["interpretation"].strip()
    for _ in range(4):  # reruns, two of them interpreting again
        app.run()
    app.button(key="interpret").click().run()
    app.button(key="interpret").click().run()
    assert cache.total_loads == 1, "a rerun reloaded the model"
    loaded_rss = app.session_state["rss"]
    assert len(cache) == 1
    app.button(key="unload").click().run()
    assert len(cache) == 0, "nothing may stay loaded after 'Décharger LLM'"
    assert app.session_state["rss"] < loaded_rss - 50 * 2**20
    assert any(c.value == "Modèles déchargés: 1" for c in app.sidebar.caption)


@pytest.mark.slow
def test_upload_a_real_survey_gives_an_interpretation(
    app, cache: ModelCache, ert_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    real = ert_dir / "gimli_slagdump.ohm"
    app.file_uploader(key="upload").upload(real.name, real.read_bytes()).run()
    assert not app.exception, app.exception
    assert any("electrodes" in c.value.lower() or "data" in c.value.lower() for c in app.code)
    app.button(key="interpret").click().run()
    assert not app.exception, app.exception
    assert app.session_state["interpretation"].strip()
    assert len(cache) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_real_browser_unload_changes_the_memory_figure(ert_dir: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "SETRAF_ERT_DIR": str(ert_dir)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            deadline = time.monotonic() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=10_000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            page.get_by_text("Décharger LLM").wait_for(timeout=60_000)
            real = ert_dir / "gimli_slagdump.ohm"
            page.locator("input[type=file]").set_input_files(str(real))
            page.get_by_role("button", name="Interpréter").click(timeout=60_000)
            page.get_by_text("Modèles chargés: 1").wait_for(timeout=240_000)
            rss = page.locator('[data-testid="stMetric"]').first.inner_text()
            page.screenshot(path=str(ROOT / "docs" / "img" / "app.png"), full_page=True)
            page.get_by_role("button", name="Décharger LLM").click()
            page.get_by_text("Modèles déchargés: 1").wait_for(timeout=60_000)
            page.get_by_text("Modèles chargés: aucun").wait_for(timeout=60_000)
            rss_after = page.locator('[data-testid="stMetric"]').first.inner_text()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert rss != rss_after, (rss, rss_after)
    assert (ROOT / "docs" / "img" / "app.png").stat().st_size > 10_000
