"""The report a geophysicist hands over: one self-contained HTML file.

:func:`html_report` writes the survey facts, the pseudo-section and (when an inversion ran)
the inverted section with its depth-of-investigation mask (PNG figures embedded as
``data:`` URIs: the file loads nothing from anywhere), the units table, the interpretation,
the recommendations, the checked model notes, the method and its limits, the warnings and
the versions used (:func:`collect_versions`). Every word is in the report's language
(:mod:`langchain_setraf.ert.i18n`); every string that comes from outside the package (file
names, titles, model text, warnings quoting it) is HTML-escaped.

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> from langchain_setraf.ert.chains import Interpretation
    >>> survey = load_survey("examples/two_layer_wenner.dat")
    >>> page = html_report(Interpretation(language="fr"), survey, summarize(survey),
    ...                    figures=False)
    >>> page.startswith("<!DOCTYPE html>") and "Faits du levé" in page
    True
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from langchain_setraf.ert.chains import Interpretation
from langchain_setraf.ert.i18n import (
    array_name,
    check_language,
    confidence_name,
    material_name,
    number,
    translated,
)
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.layering import LayeredModel
from langchain_setraf.ert.model_section import InversionProgress
from langchain_setraf.ert.rendering import fmt, span
from langchain_setraf.ert.summary import SurveySummary, layering_text
from langchain_setraf.ert.survey import Survey

__all__ = [
    "Versions",
    "collect_versions",
    "fact_rows",
    "fact_value",
    "html_report",
    "progress_text",
    "report_target",
    "summary_unresolved",
    "unresolved_sentences",
    "write_report",
]


@dataclass(frozen=True)
class Versions:
    """What produced a report.

    Attributes:
        package: ``langchain-setraf`` and its version.
        llm: The language model: its file name and the first 12 hex digits of its SHA-256,
            a folder name, or the server URL as given (``None``: no model ran).
        runtime: What ran the model (``llama-cpp-python 0.3.36``, ``transformers 5.24``…).
        inverter: The inversion library and version (``None``: no inversion ran).
        python: The Python version.
    """

    package: str
    llm: str | None = None
    runtime: str | None = None
    inverter: str | None = None
    python: str = platform.python_version()


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=8)
def _sha256_prefix(path: str, size: int, mtime_ns: int) -> str:
    """The first 12 hex digits of a file's SHA-256 (cached per path, size and mtime)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _model_label(model: str) -> str:
    path = Path(model).expanduser()
    if path.is_file():
        st = path.stat()
        return f"{path.name} (sha256 {_sha256_prefix(str(path), st.st_size, st.st_mtime_ns)}…)"
    if path.is_dir():
        return f"{path.name}/"
    return model


_RUNTIMES = {
    "gguf": ("llama-cpp-python",),
    "llama-server": ("xllamacpp", "llama-cpp-python"),
    "transformers": ("transformers", "torch"),
}


def collect_versions(
    model: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    inverter: str | None = None,
) -> Versions:
    """The versions a report names.

    Args:
        model: The model file, folder or URL the interpretation used (``None``: none ran).
        backend: The backend that ran it (``gguf``, ``llama-server``, ``transformers``,
            ``openai`` or a plugin's name): which runtime versions are named.
        inverter: The inversion library and version (:attr:`ModelSection.library`).
    """
    runtime = None
    if backend is not None:
        found = [f"{n} {v}" for n in _RUNTIMES.get(backend, ()) if (v := _dist_version(n))]
        runtime = ", ".join([backend, *found]) if found else backend
    return Versions(
        package=f"langchain-setraf {_dist_version('langchain-setraf') or '(not installed)'}",
        llm=None if model is None else _model_label(os.fspath(model)),
        runtime=runtime,
        inverter=inverter,
    )


def fact_value(key: str, value: Any, summary: SurveySummary, language: str) -> str:
    """A survey fact's value as a report shows it: words in ``language``, data as read."""
    if key == "depth":
        return summary.depth_text(language)
    if key == "values":
        return summary.value_text(language)
    if key == "inversion" and summary.inversion is not None:
        return summary.inversion.describe(language)
    if key == "array" and value:
        return array_name(str(value), language)
    if key == "ip" and summary.survey.ip_quantity:
        q = summary.survey.ip_quantity
        name = tr(language, f"ip.{q}") if f"ip.{q}" in _IP_KEYS else q
        return f"{name} ({summary.survey.ip_unit})" if summary.survey.ip_unit else name
    if isinstance(value, float):
        return fmt(value, language) if language == "fr" else f"{value:g}"
    return str(value)


def progress_text(progress: InversionProgress, language: str) -> str:
    """An inversion iteration as the app's progress bar says it, in ``language``.

    Example:
        >>> progress_text(InversionProgress(3, 10, 1.234, 0.5, 12.34), "fr")
        'itération 3/10 : χ² 1,23, β 0,5, 12,3 s'
    """
    p = progress
    return tr(
        language,
        "html.progress",
        iteration=p.iteration,
        max_iterations=p.max_iterations,
        chi2=number(p.chi2, ".2f", language),
        beta=number(p.beta, ".3g", language),
        elapsed=number(p.elapsed_s, ".1f", language),
    )


def fact_rows(summary: SurveySummary, language: str) -> list[tuple[str, str]]:
    """The survey facts as (label, value) pairs in ``language``, the depth of investigation
    last: what the report's facts table and the app's facts panel show."""
    rows = [
        (tr(language, f"fact.{k}"), fact_value(k, v, summary, language))
        for k, v in summary.facts().items()
        if v not in (None, "")
    ]
    return [*rows, (tr(language, "fact.doi"), summary.doi_text(language))]


_IP_KEYS = {f"ip.{q}" for q in ("Chargeability", "Frequency Effect", "IP", "Metal Factor",
                                "Phase Angle")}  # fmt: skip

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:64rem;
margin:2rem auto;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:1.8rem;
border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}td.n{text-align:right;white-space:nowrap}
img{max-width:100%;height:auto}.muted{color:#555;font-size:.9rem}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str] | None, rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table; without ``header``, the first column of each row is its heading."""
    numeric = numeric or set()
    if header is None:
        body = "".join(
            f'<tr><th scope="row">{_e(r[0])}</th>'
            + "".join(f'<td class="n">{_e(c)}</td>' if i + 1 in numeric else f"<td>{_e(c)}</td>"
                      for i, c in enumerate(r[1:]))
            + "</tr>"
            for r in rows
        )  # fmt: skip
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _items(values: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(v)}</li>" for v in values) + "</ul>"


def _figure_html(survey: Survey, summary: SurveySummary, language: str) -> str:
    from langchain_setraf.ert.figures import section_png

    png = section_png(survey, summary.inversion, language)
    data = base64.b64encode(png).decode("ascii")
    alt = tr(language, "figure.pseudo")
    if summary.inversion is not None:
        alt += " · " + tr(language, "figure.model_section")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def unresolved_sentences(
    codes: Sequence[str],
    language: str,
    *,
    doi_m: float | None = None,
    basement_rho: float | None = None,
    conductance_s: float | None = None,
) -> list[str]:
    """What the data cannot resolve, as sentences in ``language``, from the codes of a
    layered reading of the inverted section: ``"below_doi"``, ``"basement_lower_bound"``
    (the basement's resistivity is a lower bound), ``"conductor_equivalence"`` (the
    conductor above it is known by its conductance only).

    Raises:
        ValueError: ``language`` is neither ``"fr"`` nor ``"en"``, or a code is none of
            these three (the message names it).
    """
    f = functools.partial(fmt, language=check_language(language))
    values = {
        "below_doi": {"doi": f(doi_m)},
        "basement_lower_bound": {"rho": f(basement_rho)},
        "conductor_equivalence": {"s": f(conductance_s)},
    }
    out = []
    for code in codes:
        if code not in values:
            raise ValueError(
                f"unknown unresolved code {code!r}; expected one of {', '.join(values)}"
            )
        out.append(tr(language, f"unresolved.{code}", **values[code]))
    return out


def summary_unresolved(summary: SurveySummary, language: str) -> list[str]:
    """What the data cannot resolve, as sentences in ``language``, from the layered reading
    of the summary's inverted section (:attr:`SurveySummary.layering`): nothing below the
    depth of investigation and, for a conductor over a resistive basement, the basement's
    resistivity as a lower bound and the conductor's conductance. Empty without an
    inversion (the depth-of-investigation rule says the rest).

    Raises:
        ValueError: ``language`` is neither ``"fr"`` nor ``"en"``.
    """
    layering = summary.layering
    if layering is None:
        check_language(language)
        return []
    basement = next((layer.rho for layer in layering.layers if layer.lower_bound), None)
    return unresolved_sentences(
        layering.unresolved,
        language,
        doi_m=layering.doi_m,
        basement_rho=basement,
        conductance_s=layering.conductance_s,
    )


def _method(summary: SurveySummary, language: str, unresolved: Sequence[str]) -> list[str]:
    t = functools.partial(tr, language)
    f = functools.partial(fmt, language=language)
    parts: list[str] = []
    model = summary.inversion
    if model is not None:
        parts.append(f"<p>{_e(model.describe(language))}</p>")
        rows = [
            [t("html.inversion"), model.library],
            ["χ²", f(model.chi2)],
            [t("html.rms"), f(model.rms_percent)],
            [t("html.iterations"), str(model.iterations)],
            [t("html.stopped_by"), _stopped(model.stopped_by, language)],
            [t("fact.doi") + " (m)", f(model.doi_m)],
            [t("html.elapsed"), f(model.elapsed_s)],
        ]
        parts.append(_table(None, rows, numeric={1}))
        if summary.layering is not None:
            parts.append(f"<h3>{_e(t('html.layered_model'))}</h3>")
            parts.append(f"<p>{_e(layering_text(summary.layering, model, language))}</p>")
            parts.append(_layering_table(summary.layering, language))
    elif summary.survey.depth_kind == "model":
        parts.append(f"<p>{_e(t('html.file_model'))}</p>")
    else:
        parts.append(f"<p>{_e(t('html.no_inversion'))}</p>")
    doi = summary.doi_text(language)
    if summary.doi_depth:
        doi += t("render.doi_depth", d=f(summary.doi_depth))
    parts.append(f"<h3>{_e(t('html.resolution'))}</h3>")
    return [*parts, _items([doi, *unresolved])]


def _layering_table(layering: LayeredModel, language: str) -> str:
    """The layered model the units come from: ρ, top, the interface below (± 1 σ where the
    fit of the data gives them) and, for dipping interfaces, the dip."""
    t = functools.partial(tr, language)
    f = functools.partial(fmt, language=language)

    def pm(value: float, sd: float | None) -> str:
        return f(value) if sd is None else f"{f(value)} ± {f(sd)}"

    dipping = layering.geometry == "dipping"
    header = [t("html.layer"), t("html.layer_rho"), t("html.layer_top"), t("html.interface_depth")]
    if dipping:
        header.append(t("html.interface_slope"))
    rows = []
    for k, layer in enumerate(layering.layers):
        if layer.lower_bound:
            rho = f"≥ {f(layer.rho)}"
        elif layer.rho_range is not None:
            low, high = layer.rho_range
            rho = f"{f(layer.rho)} ({span(low, high, language)})"
        else:
            rho = f(layer.rho)
        iface = layering.interfaces[k] if k < len(layering.interfaces) else None
        row = [
            f"U{k + 1}",
            rho,
            f(layer.top_m),
            "–" if iface is None else pm(iface.depth_m, iface.depth_sd_m),
        ]
        if dipping:
            row.append("–" if iface is None else pm(iface.slope, iface.slope_sd))
        rows.append(row)
    return _table(header, rows, numeric={1, 2, 3, 4})


def _stopped(stopped_by: str, language: str) -> str:
    key = f"model.stopped_by.{stopped_by}"
    try:
        return tr(language, key)
    except KeyError:
        return stopped_by


def html_report(
    result: Interpretation,
    survey: Survey,
    summary: SurveySummary,
    *,
    versions: Versions | None = None,
    figures: bool = True,
    unresolved: Sequence[str] = (),
) -> str:
    """The report as one self-contained HTML page, in ``result.language``.

    Args:
        result: The interpretation (:func:`~langchain_setraf.ert.interpretation_chain`).
        survey: The survey as read (its measured data draw the pseudo-section).
        summary: The summary the interpretation was made from (with its inversion, if any:
            the inverted section is drawn beside the pseudo-section).
        versions: What produced it (:func:`collect_versions`; ``None``: the package's only).
        figures: Draw the sections (needs matplotlib, the ``app`` extra).
        unresolved: Sentences, in ``result.language``, on what else the data cannot resolve
            (:func:`unresolved_sentences`), listed after the depth of investigation.

    Raises:
        ValueError: ``result.language`` is neither ``"fr"`` nor ``"en"``.
        ImportError: ``figures`` and matplotlib is not installed (the message names the
            extra).
    """
    lang = check_language(result.language)
    t = functools.partial(tr, lang)
    f = functools.partial(fmt, language=lang)
    v = versions or collect_versions()
    name = survey.path.name
    title = f"{t('report.title')} : {name}" if lang == "fr" else f"{t('report.title')}: {name}"
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<h2>{_e(t('report.facts'))}</h2>",
    ]
    facts = [list(row) for row in fact_rows(summary, lang)]
    out.append(_table(None, facts))
    if figures:
        out += [f"<h2>{_e(t('html.sections'))}</h2>", _figure_html(survey, summary, lang)]
        if summary.inversion is not None:
            out.append(f'<p class="muted">{_e(summary.inversion.describe(lang))}</p>')
    header = [t(f"report.{k}") for k in ("unit", "depth", "p10", "median", "p90", "choice")]
    header += [t("html.alternative"), t("report.cand"), t("report.setraf")]
    rows = [
        [
            u.name,
            span(u.top_m, u.bottom_m, lang),
            f(u.rho_p10),
            f(u.rho_median),
            f(u.rho_p90),
            f"{material_name(u.material, lang)} ({confidence_name(u.confidence, lang)})"
            if u.material
            else "—",
            material_name(u.alternative, lang) if u.alternative else "—",
            ", ".join(material_name(c, lang) for c in u.candidates),
            u.setraf_class,
        ]
        for u in result.units
    ]
    out += [f"<h2>{_e(t('report.units'))}</h2>", _table(header, rows, numeric={1, 2, 3, 4})]
    out += [f"<h2>{_e(t('report.interp'))}</h2>", f"<p>{_e(result.geology or '—')}</p>"]
    out += [f"<h2>{_e(t('report.recs'))}</h2>", _items(result.recommendations or ["—"])]
    if result.model_notes:
        out += [f"<h2>{_e(t('report.notes'))}</h2>", f"<p>{_e(result.model_notes)}</p>"]
    if result.notes_used:
        out += [f"<h2>{_e(t('report.notes_used'))}</h2>", notes_used_html(result, lang)]
    out += [f"<h2>{_e(t('html.method'))}</h2>", *_method(summary, lang, unresolved)]
    caveats = result.caveats or [translated(c, lang) for c in summary.caveats]
    out += [f"<h3>{_e(t('report.caveats'))}</h3>", _items(caveats or ["—"])]
    out += [f"<h2>{_e(t('report.warn'))}</h2>", _items(result.warnings or ["—"])]
    none = t("html.none")
    vrows = [
        [t("html.package"), v.package],
        [t("html.llm"), v.llm or none],
        [t("html.runtime"), v.runtime or none],
        [t("html.inverter"), v.inverter or none],
        ["Python", v.python],
        [t("html.generated"), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())],
    ]
    out += [f"<h2>{_e(t('html.versions'))}</h2>", _table(None, vrows)]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def notes_used_html(result: Interpretation, language: str) -> str:
    """The site-notes passages the model was given, each quoted with its source
    (file, page, lines) and the units that retrieved it; every string escaped."""
    quotes = [
        f"<blockquote><p>{_e(p.text)}</p><footer>{_e(p.where(language))} · "
        f"{_e(', '.join(p.units))}</footer></blockquote>"
        for p in result.notes_used
    ]
    return "".join(quotes)


def report_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a report's file name, checked before any work is done.

    Raises:
        FileNotFoundError: The folder of ``path`` does not exist (the message names it).
        ValueError: ``path`` is a folder.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"report {target}: the folder {folder} does not exist")
    if target.is_dir():
        raise ValueError(f"report {target}: is a folder, not a file name")
    return target


def write_report(path: str | os.PathLike[str], page: str) -> Path:
    """Write ``page`` to ``path`` whole or not at all (a temporary file beside it, renamed).

    Raises:
        FileNotFoundError: The folder of ``path`` does not exist (the message names it).
        ValueError: ``path`` is a folder.
    """
    target = report_target(path)
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
