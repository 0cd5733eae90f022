"""The Streamlit example: AppTest in-process, and a real browser (Playwright + Chromium)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_setraf.cache import ModelCache, get_model_cache

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "streamlit_app.py"
PLUGINS = Path(__file__).resolve().parent / "plugins"
IMG = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
FLAT_SAMPLE = "two_layer_wenner.dat"  # a flat line: the inversion handles no topography


@pytest.fixture(scope="module")
def ngram_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third-party test plugin ``setraf-ngram`` installed into a site directory."""
    target = tmp_path_factory.mktemp("ngram-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGINS / "setraf-ngram")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return target


@pytest.fixture()
def with_ngram(ngram_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process sees the ``ngram`` plugin (a third-party backend) while the test runs."""
    registry = get_model_cache().backends
    monkeypatch.delenv("SETRAF_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(ngram_site))
    registry.reset()
    yield ngram_site
    monkeypatch.undo()
    registry.reset()


def _app(ert_dir: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SETRAF_ERT_DIR", str(ert_dir))
    at = AppTest.from_file(str(APP), default_timeout=900)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture()
def app(monkeypatch: pytest.MonkeyPatch, ert_dir: Path):  # type: ignore[no-untyped-def]
    return _app(ert_dir, monkeypatch)


@pytest.mark.slow
def test_five_reruns_load_once_and_unload_gives_memory_back(app, cache: ModelCache) -> None:  # type: ignore[no-untyped-def]
    assert app.selectbox(key="backend").options[:4] == [
        "gguf",
        "llama-server (shared)",
        "transformers",
        "openai (URL)",
    ]
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    app.button(key="interpret").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
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
def test_interpretation_is_a_table_of_units_and_prose(app, cache: ModelCache) -> None:  # type: ignore[no-untyped-def]
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    app.button(key="interpret").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    result = app.session_state["interpretation_result"]
    table = app.table[0].value
    assert list(table.columns) == [
        "Unité",
        "Profondeur (m)",
        "ρ p10–p90 (Ω·m)",
        "ρ médiane (Ω·m)",
        "Matériau",
        "Alternative",
        "Confiance",
    ]  # fmt: skip  (no "Raison": a one-word reason is not a reason)
    assert len(table) == len(result.units) >= 2
    assert list(table["Unité"]) == [u.name for u in result.units]
    assert all(m and m != "—" for m in table["Matériau"]), "a unit has no material"
    assert set(table["Confiance"]) <= {"faible", "moyenne", "élevée"}
    assert any(result.geology[:40] in m.value for m in app.markdown), "the prose is not shown"
    # the English UI renders the same structure in English
    app.radio(key="lang").set_value("en").run()
    app.button(key="interpret").click().run()
    assert list(app.table[0].value.columns)[4] == "Material"
    assert set(app.table[0].value["Confidence"]) <= {"low", "medium", "high"}


@pytest.mark.slow
def test_upload_a_real_survey_gives_an_interpretation(
    app, cache: ModelCache, ert_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    real = ert_dir / "gimli_slagdump.ohm"
    app.file_uploader(key="upload").upload(real.name, real.read_bytes()).run()
    assert not app.exception, app.exception
    # the survey facts, in the app's language (French by default)
    assert any(
        "électrodes :" in c.value.lower() or "electrodes:" in c.value.lower() for c in app.code
    )
    app.button(key="interpret").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert app.session_state["interpretation"].strip()
    assert len(cache) == 1


@pytest.mark.slow
def test_the_embedded_gguf_is_the_default_whatever_plugins_are_installed(
    with_ngram: Path, monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: ModelCache
) -> None:
    app = _app(ert_dir, monkeypatch)
    backend = app.selectbox(key="backend")
    assert "ngram" in backend.options, "the plugin is not visible to the app"
    assert backend.value == "gguf"
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    app.button(key="interpret").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert app.session_state["interpretation"].strip()
    assert [m.backend for m in cache.loaded()] == ["gguf"]


def test_a_plugin_without_a_model_says_so(
    with_ngram: Path, monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: ModelCache
) -> None:
    app = _app(ert_dir, monkeypatch)
    app.selectbox(key="backend").set_value("ngram").run()
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    app.button(key="interpret").click().run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == [
        "Aucun modèle : indiquez un fichier ou un dossier de modèle pour « ngram »."
    ]
    app.text_input(key="model-ngram").set_value(str(ert_dir / "missing.txt")).run()
    app.button(key="interpret").click().run()
    assert not app.exception, app.exception
    assert len(app.error) == 1
    assert app.error[0].value.startswith("Échec de l'interprétation (ngram): FileNotFoundError:")
    assert "missing.txt" in app.error[0].value


def test_a_plugin_model_that_fails_is_an_error_not_silence(
    with_ngram: Path, monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: ModelCache,
    tmp_path: Path,
) -> None:  # fmt: skip
    # a bigram model knows none of the prompt's words: it generates nothing at all
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the survey shows a clay layer over the bedrock and the clay is wet")
    app = _app(ert_dir, monkeypatch)
    app.selectbox(key="backend").set_value("ngram").run()
    app.text_input(key="model-ngram").set_value(str(corpus)).run()
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    app.button(key="interpret").click().run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == [
        "Échec de l'interprétation (ngram): ValueError: NGramLLM generated no text for the "
        "interpretation form (parsed decoding); nothing to interpret"
    ]
    assert [m.backend for m in cache.loaded()] == ["ngram"], "the plugin's model was not used"
    assert not app.table


@pytest.mark.slow
def test_invert_shows_the_model_section_and_interprets_it(app, cache: ModelCache) -> None:  # type: ignore[no-untyped-def]
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    assert app.session_state["section"] is None
    app.button(key="invert").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    section = app.session_state["section"]
    assert section is not None and section.n_cells > 100 and section.doi_m > 0
    assert any("χ²" in c.value and "pole-field" in c.value for c in app.caption)
    assert any("model depth" in c.value or "profondeur" in c.value for c in app.code)
    app.button(key="interpret").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert any("section inversée" in c.value for c in app.caption)
    assert app.session_state["interpretation"].strip()
    app.run()  # a rerun keeps the inversion (no second one) and the interpretation
    assert app.session_state["section"] is section
    assert app.table


@pytest.mark.slow
def test_the_regularisation_choice_reaches_the_inversion_and_the_report(app) -> None:  # type: ignore[no-untyped-def]
    """The inversion controls offer smooth/blocky (default: InversionOptions'); a blocky run
    is named in the caption, and the downloadable report says what the data cannot resolve
    (a stand-in model's answer, put where the app keeps its results, isolates the report
    from a real model run)."""
    import hashlib

    from langchain_core.language_models import FakeListLLM

    from langchain_setraf.ert import interpretation_chain, load_survey, summarize
    from langchain_setraf.ert.model_section import InversionOptions

    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    choice = app.radio(key="regularization")
    assert choice.value == InversionOptions().regularization == "smooth"
    assert list(choice.options) == ["lissée", "par blocs (IRLS)"]
    choice.set_value("blocky").run()
    app.button(key="invert").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    section = app.session_state["section"]
    assert section is not None and section.regularization == "blocky"
    assert any(h.phase == "blocky" for h in section.history)
    assert any("par blocs (IRLS)" in c.value for c in app.caption)
    path = ROOT / "examples" / FLAT_SAMPLE
    summary = summarize(load_survey(path), language="fr", model=section)
    result = interpretation_chain(FakeListLLM(responses=["{}"]), "fr").invoke({"survey": summary})
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    app.session_state["results"] = {(key, "fr", True): result}
    app.run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    page = app.session_state["report_html"]
    assert "Ce que les données ne peuvent pas résoudre" in page
    assert "borne inférieure (au moins " in page and " S, épaisseur / résistivité)" in page


def test_an_inversion_failure_is_shown(app, ert_dir: Path) -> None:  # type: ignore[no-untyped-def]
    real = ert_dir / "geoelectrics_p3_dipoledipole_model.xyz"  # a model: nothing to invert
    app.file_uploader(key="upload").upload(real.name, real.read_bytes()).run()
    app.button(key="invert").click().run()
    assert not app.exception, app.exception
    assert len(app.error) == 1
    assert app.error[0].value.startswith("Échec de l'inversion:")
    assert "no apparent-resistivity data to invert" in app.error[0].value
    assert app.session_state["section"] is None


def test_the_report_button_offers_the_html_report(app, ert_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """An interpretation on screen comes with "Télécharger le rapport" and "Télécharger le
    rapport (PDF)": the same self-contained report as ``setraf interpret --report``, as HTML
    and as PDF, with the same words (a stand-in model's answer,
    put where the app keeps its results, isolates the button from a real model run)."""
    import hashlib
    import json

    from langchain_core.language_models import FakeListLLM

    from langchain_setraf.ert import interpretation_chain, load_survey, summarize
    from langchain_setraf.ert.fluency import sentence_language
    from langchain_setraf.ert.interpretation import spec_of

    path = ROOT / "examples" / FLAT_SAMPLE
    summary = summarize(load_survey(path), language="fr")
    answer = {u.name: {"material": u.candidates[0]} for u in spec_of(summary).units}
    answer["summary"] = "<script>alert(1)</script> Une couche conductrice repose sur le socle."
    result = interpretation_chain(FakeListLLM(responses=[json.dumps(answer)]), "fr").invoke(
        {"survey": summary}
    )
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    app.session_state["results"] = {(key, "fr", False): result}
    app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert "Raison" not in list(app.table[0].value.columns)
    facts = app.code[0].value  # the facts panel: French labels and French words
    assert "dispositif : wenner-alpha" in facts and "valeurs : résistivité apparente" in facts
    ours = facts.replace(load_survey(path).title, " ")  # the file's own title is data
    assert not [ln for ln in ours.splitlines() if sentence_language(ln) == "en"], facts
    buttons = app.get("download_button")
    labels = [b.proto.label for b in buttons]
    assert labels == ["Télécharger le rapport", "Télécharger le rapport (PDF)"]
    page = app.session_state["report_html"]
    assert page.startswith("<!DOCTYPE html>") and '<html lang="fr">' in page
    assert page.count("data:image/png;base64,") == 1 and "http" not in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Versions utilisées" in page and "SmolLM2" in page  # the app's default model
    pdf = app.session_state["report_pdf"]
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    assert "Versions utilisées" in text and "Une couche conductrice repose sur le socle" in text
    app.radio(key="lang").set_value(
        "en"
    ).run()  # the English UI has no English result yet: no button
    assert not app.get("download_button")


def _pdf_text(pdf: bytes) -> str:
    """The text of a PDF as pypdf reads it, with its line breaks made spaces."""
    import io

    from pypdf import PdfReader

    pages = PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pages)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PAGE_HEIGHT = """() => Math.max(
  ...['[data-testid="stMain"]', 'section.main', '[data-testid="stSidebarContent"]']
    .flatMap(s => [...document.querySelectorAll(s)]).map(e => e.scrollHeight),
  document.documentElement.scrollHeight)"""


def _whole_page(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Screenshot the whole app: Streamlit scrolls an inner container, so grow the viewport
    to that container's scroll height (an inner scroll is invisible to ``full_page``)."""
    width = page.viewport_size["width"]
    for _ in range(3):  # the layout reflows once the viewport grows; bounded
        height = int(page.evaluate(_PAGE_HEIGHT))
        if height <= page.viewport_size["height"]:
            break
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(1500)
    page.screenshot(path=str(path), full_page=True)


@pytest.mark.slow
def test_real_browser_interpret_invert_unload_and_screenshots(
    ert_dir: Path, ngram_site: Path, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    # the app's server sees the plugin and the same langchain_setraf as this test (a
    # PYTHONPATH naming a checkout's src stays on the path)
    paths = [str(ngram_site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "SETRAF_ERT_DIR": str(ert_dir), "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("SETRAF_PLUGINS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    shots = {name: tmp_path / name for name in ("app.png", "app_inverted.png")}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
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
            # the plugin is installed, yet the embedded GGUF model is preselected
            backend = page.get_by_role("combobox", name="Moteur")
            assert backend.input_value() == "gguf"
            page.locator('[data-testid="stSelectbox"]').first.get_by_role("button").click()
            page.get_by_role("option", name="ngram").wait_for(timeout=30_000)
            page.keyboard.press("Escape")
            assert backend.input_value() == "gguf"
            sample = ROOT / "examples" / FLAT_SAMPLE
            # the survey uploader (the site-notes uploader beside it takes several files)
            page.locator("input[type=file]:not([multiple])").set_input_files(str(sample))
            page.get_by_role("button", name="Interpréter").click(timeout=60_000)
            page.get_by_text("Modèles chargés: 1").wait_for(timeout=300_000)
            page.get_by_text("Matériau").first.wait_for(timeout=300_000)
            rss = page.locator('[data-testid="stMetric"]').first.inner_text()
            page.wait_for_timeout(1000)
            _whole_page(page, shots["app.png"])
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.get_by_role("button", name="Inverser").click(timeout=60_000)
            page.get_by_text("inversion lissée").first.wait_for(timeout=600_000)
            page.get_by_role("button", name="Interpréter").click(timeout=60_000)
            page.get_by_text("Interprétation de la section inversée").wait_for(timeout=300_000)
            page.wait_for_timeout(1000)
            _whole_page(page, shots["app_inverted.png"])
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.get_by_role("button", name="Décharger LLM").click()
            page.get_by_text("Modèles déchargés: 1").wait_for(timeout=60_000)
            page.get_by_text("Modèles chargés: aucun").wait_for(timeout=60_000)
            rss_after = page.locator('[data-testid="stMetric"]').first.inner_text()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert rss != rss_after, (rss, rss_after)
    for name, shot in shots.items():
        from PIL import Image

        with Image.open(shot) as img:
            assert img.height > 1000, f"{name} is not the whole page ({img.size})"
        (IMG / name).write_bytes(shot.read_bytes())  # the README's screenshots


@pytest.mark.slow
def test_shared_llama_server_two_sessions_one_server_and_unload_stops_it(
    monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: ModelCache, tmp_path: Path
) -> None:
    """ "llama-server (shared)": two browser sessions and their reruns use one server
    process; the memory panel shows it; "Décharger LLM" stops it (this process started
    it and no other process is attached)."""
    from langchain_setraf.backends.llama_server.managed import running_servers

    monkeypatch.setenv("SETRAF_RUNTIME_DIR", str(tmp_path / "runtime"))
    sessions = [_app(ert_dir, monkeypatch), _app(ert_dir, monkeypatch)]
    try:
        for at in sessions:
            at.selectbox(key="backend").set_value("llama-server").run()
            assert at.selectbox(key="backend").format_func("llama-server") == (
                "llama-server (shared)"
            )
            at.number_input(key="n_parallel").set_value(2).run()
            at.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
            at.button(key="interpret").click().run()
            assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
            assert at.session_state["interpretation"].strip()
            at.run()  # a rerun
        servers = [s for s in running_servers() if s.running]
        assert len(servers) == 1, "two sessions must share one server process"
        server = servers[0]
        assert server.info is not None and server.clients == [os.getpid()]
        assert cache.total_loads == 1, "the second session or a rerun attached again"
        sessions[1].run()
        panel = [c.value for c in sessions[1].sidebar.caption]
        assert any(f"llama-server pid {server.info.pid}" in c for c in panel), panel
        sessions[0].button(key="unload").click().run()
        assert len(cache) == 0
        assert not any(s.running for s in running_servers()), "Décharger LLM left it running"
    finally:
        for s in running_servers():
            if s.running:
                from langchain_setraf.backends.llama_server.managed import ManagedServer

                ManagedServer.for_key(s.key).stop()
