"""SETRAF's "Intelligence Artificielle" experience as a Streamlit app.

Pick a backend (every backend ``list_backends()`` reports, plugins included) and a model,
upload or pick an ERT survey, read its facts and section plot, and stream a grounded
interpretation. "Décharger LLM" releases the model through the package's cache and the
memory panel shows the drop. Reruns never reload: the process-wide model cache is the
singleton, so no ``st.cache_resource`` is needed.

Run::

    .venv/bin/pip install -e ".[gguf,default-model,app]"
    .venv/bin/streamlit run examples/streamlit_app.py

``SETRAF_ERT_DIR`` adds a folder of sample surveys to the picker (the tests point it at
``../shared/data/ert``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_setraf import (
    get_model_cache,
    init_chat_model,
    init_llm,
    list_backends,
    memory_snapshot,
    release_all,
)
from langchain_setraf.ert import ERTFormatError, load_survey, prompts, summarize
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.memory import format_bytes
from langchain_setraf.models import DefaultModelNotInstalledError, default_gguf_path

HERE = Path(__file__).resolve().parent
TEXT = {
    "fr": {
        "title": "SETRAF — interprétation ERT",
        "ai": "Intelligence Artificielle",
        "backend": "Moteur",
        "model": "Modèle (fichier .gguf ou dossier)",
        "unload": "Décharger LLM",
        "unloaded": "Modèles déchargés",
        "memory": "Mémoire",
        "survey": "Relevé ERT",
        "upload": "Importer un fichier",
        "sample": "…ou choisir un exemple",
        "interpret": "Interpréter",
        "loading": "Chargement du modèle",
        "loaded_models": "Modèles chargés",
        "none": "aucun",
        "warnings": "Vérification des nombres",
    },
    "en": {
        "title": "SETRAF — ERT interpretation",
        "ai": "Artificial Intelligence",
        "backend": "Backend",
        "model": "Model (.gguf file or folder)",
        "unload": "Décharger LLM",
        "unloaded": "Models unloaded",
        "memory": "Memory",
        "survey": "ERT survey",
        "upload": "Upload a file",
        "sample": "…or pick a sample",
        "interpret": "Interpret",
        "loading": "Loading the model",
        "loaded_models": "Loaded models",
        "none": "none",
        "warnings": "Number check",
    },
}


def _samples() -> dict[str, Path]:
    found = {p.name: p for p in [HERE / "two_layer_wenner.dat"] if p.is_file()}
    extra = os.environ.get("SETRAF_ERT_DIR")
    if extra and Path(extra).is_dir():
        for p in sorted(Path(extra).iterdir()):
            if p.is_file() and p.suffix.lower() not in (".md", ".txt"):
                found[p.name] = p
    return found


def _default_model(backend: str) -> str:
    if backend == "gguf":
        try:
            return str(default_gguf_path())
        except DefaultModelNotInstalledError:
            return ""
    return ""


def _options(backend: str) -> dict[str, Any]:
    if backend == "gguf":
        return {"n_ctx": int(st.number_input("n_ctx", 512, 32768, 2048, step=512))}
    if backend == "transformers":
        quant = st.selectbox("quantization", ["auto", "nf4", "int8", "bf16", "fp16", "fp32"])
        return {"quantization": quant}
    return {}


def _plot(survey: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cells = survey.cells
    fig, ax = plt.subplots(figsize=(9, 3.2))
    if cells:
        rho = [c.rho for c in cells]
        sc = ax.scatter(
            [c.x for c in cells],
            [c.depth for c in cells],
            c=rho,
            cmap="jet_r",
            norm=LogNorm(vmin=min(rho), vmax=max(rho)),
            s=28,
            marker="s",
        )
        fig.colorbar(sc, ax=ax, label="ρ (Ω·m, log)")
    ax.invert_yaxis()
    ax.set_xlabel("x (m)")
    ax.set_ylabel("depth (m)" if survey.depth_kind == "model" else "pseudo-depth (m)")
    fig.tight_layout()
    return fig


def main() -> None:
    st.set_page_config(page_title="SETRAF", layout="wide")
    cache = get_model_cache()
    with st.sidebar:
        lang = st.radio("Langue / Language", ["fr", "en"], horizontal=True)
        t = TEXT[lang]
        st.header(t["ai"])
        infos = [b for b in list_backends() if b.importable]
        names = [b.name for b in infos]
        backend = st.selectbox(t["backend"], names, key="backend")
        model = st.text_input(t["model"], value=_default_model(backend), key=f"model-{backend}")
        options = _options(backend)
        if st.button(t["unload"], type="primary", key="unload"):
            st.session_state["unloaded"] = release_all()
        if "unloaded" in st.session_state:
            st.caption(f"{t['unloaded']}: {st.session_state['unloaded']}")
        memory_panel = st.container()

    st.title(t["title"])
    st.subheader(t["survey"])
    upload = st.file_uploader(t["upload"], key="upload")
    samples = _samples()
    sample = st.selectbox(t["sample"], ["—", *samples], key="sample")
    path: Path | None = None
    if upload is not None:
        tmp = Path(tempfile.mkdtemp()) / upload.name
        tmp.write_bytes(upload.getvalue())
        path = tmp
    elif sample != "—":
        path = samples[sample]

    if path is not None:
        try:
            survey = load_survey(path)
        except ERTFormatError as exc:
            st.error(str(exc))
            survey = None
        if survey is not None:
            summary = summarize(survey, language=lang)
            cols = st.columns(2)
            cols[0].markdown("**Facts**")
            cols[0].code(summary.to_text(), language="text")
            cols[1].pyplot(_plot(survey))
            if st.button(t["interpret"], key="interpret") and model:
                uri = f"{backend}:{model}"
                try:
                    chat = init_chat_model(uri, temperature=0, max_tokens=200, **options)
                except Exception:
                    chat = init_llm(uri, **options)  # a plugin without a chat class
                with st.status(t["loading"], expanded=False) as status:
                    backend_obj, spec = chat._backend_and_spec()
                    st.write(f"≈ {format_bytes(backend_obj.estimate_bytes(spec))}")
                    with chat._lease(lock=False):
                        pass
                    status.update(label=f"{t['loading']}: OK", state="complete")
                messages = [
                    SystemMessage(prompts.SYSTEM[lang]),
                    HumanMessage(
                        prompts.INTERPRET[lang].format(
                            facts=summary.to_text(),
                            data=prompts.as_data(f"title: {survey.title}"),
                        )
                    ),
                ]
                text = st.write_stream(
                    (getattr(c, "content", c) for c in chat.stream(messages)), cursor="▌"
                )
                st.session_state["interpretation"] = str(text)
                warnings = check_numbers(str(text), summary)
                with st.expander(t["warnings"], expanded=bool(warnings)):
                    for w in warnings or ["OK"]:
                        st.write(f"- {w}")

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


main()
