"""The report a geophysicist hands over: one self-contained HTML file, or a PDF.

:func:`report_document` gathers the report's blocks; :func:`html_report` writes them as
one HTML page and :func:`~langchain_setraf.ert.report_pdf.pdf_report` as a PDF. They hold
the survey facts, the pseudo-section and (when an inversion ran) the inverted section with
its depth-of-investigation mask (PNG figures embedded; in HTML as ``data:`` URIs: the file
loads nothing from anywhere), the units table, the interpretation,
the recommendations, the checked model notes, the method and its limits, the warnings and
the versions used (:func:`collect_versions`). Every word is in the report's language
(:mod:`langchain_setraf.ert.i18n`); every string that comes from outside the package (file
names, titles, model text, warnings quoting it) is HTML-escaped, and a PDF writes text
as text (no markup is read from it).

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
    "REPORT_FORMATS",
    "Block",
    "Figure",
    "Heading",
    "Items",
    "Paragraph",
    "Quote",
    "ReportDocument",
    "Table",
    "Versions",
    "collect_versions",
    "fact_rows",
    "fact_value",
    "html_report",
    "progress_text",
    "render_html",
    "report_document",
    "report_format",
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


@dataclass(frozen=True)
class Heading:
    """A section heading (``level`` 1: the title, 2: a section, 3: a subsection)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text (``muted``: a caption)."""

    text: str
    muted: bool = False


@dataclass(frozen=True)
class Table:
    """A table: without ``header``, the first column of each row is its heading;
    ``numeric`` holds the indexes of the columns aligned right."""

    rows: tuple[tuple[str, ...], ...]
    header: tuple[str, ...] | None = None
    numeric: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Items:
    """A bulleted list."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Figure:
    """A PNG figure and its text alternative."""

    png: bytes
    alt: str


@dataclass(frozen=True)
class Quote:
    """A quoted passage and where it comes from."""

    text: str
    source: str


#: One block of a report, in reading order.
Block = Heading | Paragraph | Table | Items | Figure | Quote


@dataclass(frozen=True)
class ReportDocument:
    """A report as blocks, before it is written as HTML (:func:`render_html`) or PDF
    (:func:`langchain_setraf.ert.report_pdf.render_pdf`): both show the same words.

    Attributes:
        title: The report's title (its first heading).
        language: ``"fr"`` or ``"en"``.
        blocks: The content in reading order, the title first.
    """

    title: str
    language: str
    blocks: tuple[Block, ...]


def _table(
    header: list[str] | None, rows: list[list[str]], numeric: set[int] | None = None
) -> Table:
    return Table(
        rows=tuple(tuple(r) for r in rows),
        header=None if header is None else tuple(header),
        numeric=frozenset(numeric or ()),
    )


def _figure(survey: Survey, summary: SurveySummary, language: str) -> Figure:
    from langchain_setraf.ert.figures import section_png

    alt = tr(language, "figure.pseudo")
    if summary.inversion is not None:
        alt += " · " + tr(language, "figure.model_section")
    return Figure(section_png(survey, summary.inversion, language), alt)


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


def _method(summary: SurveySummary, language: str, unresolved: Sequence[str]) -> list[Block]:
    t = functools.partial(tr, language)
    f = functools.partial(fmt, language=language)
    parts: list[Block] = []
    model = summary.inversion
    if model is not None:
        parts.append(Paragraph(model.describe(language)))
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
            parts.append(Heading(t("html.layered_model"), 3))
            parts.append(Paragraph(layering_text(summary.layering, model, language)))
            parts.append(_layering_table(summary.layering, language))
    elif summary.survey.depth_kind == "model":
        parts.append(Paragraph(t("html.file_model")))
    else:
        parts.append(Paragraph(t("html.no_inversion")))
    doi = summary.doi_text(language)
    if summary.doi_depth:
        doi += t("render.doi_depth", d=f(summary.doi_depth))
    parts.append(Heading(t("html.resolution"), 3))
    return [*parts, Items((doi, *unresolved))]


def _layering_table(layering: LayeredModel, language: str) -> Table:
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


def report_document(
    result: Interpretation,
    survey: Survey,
    summary: SurveySummary,
    *,
    versions: Versions | None = None,
    figures: bool = True,
    unresolved: Sequence[str] = (),
) -> ReportDocument:
    """The report's content, in ``result.language``: what :func:`html_report` and
    :func:`~langchain_setraf.ert.report_pdf.pdf_report` write.

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
    out: list[Block] = [Heading(title, 1), Heading(t("report.facts"))]
    out.append(_table(None, [list(row) for row in fact_rows(summary, lang)]))
    if figures:
        out += [Heading(t("html.sections")), _figure(survey, summary, lang)]
        if summary.inversion is not None:
            out.append(Paragraph(summary.inversion.describe(lang), muted=True))
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
    out += [Heading(t("report.units")), _table(header, rows, numeric={1, 2, 3, 4})]
    out += [Heading(t("report.interp")), Paragraph(result.geology or "—")]
    out += [Heading(t("report.recs")), Items(tuple(result.recommendations or ["—"]))]
    if result.model_notes:
        out += [Heading(t("report.notes")), Paragraph(result.model_notes)]
    if result.notes_used:
        out.append(Heading(t("report.notes_used")))
        out += [Quote(p.text, f"{p.where(lang)} · {', '.join(p.units)}") for p in result.notes_used]
    out += [Heading(t("html.method")), *_method(summary, lang, unresolved)]
    caveats = result.caveats or [translated(c, lang) for c in summary.caveats]
    out += [Heading(t("report.caveats"), 3), Items(tuple(caveats or ["—"]))]
    out += [Heading(t("report.warn")), Items(tuple(result.warnings or ["—"]))]
    none = t("html.none")
    vrows = [
        [t("html.package"), v.package],
        [t("html.llm"), v.llm or none],
        [t("html.runtime"), v.runtime or none],
        [t("html.inverter"), v.inverter or none],
        ["Python", v.python],
        [t("html.generated"), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())],
    ]
    out += [Heading(t("html.versions")), _table(None, vrows)]
    return ReportDocument(title=title, language=lang, blocks=tuple(out))


def _html_table(table: Table) -> str:
    def cell(i: int, c: str) -> str:
        return f'<td class="n">{_e(c)}</td>' if i in table.numeric else f"<td>{_e(c)}</td>"

    if table.header is None:
        body = "".join(
            f'<tr><th scope="row">{_e(r[0])}</th>'
            + "".join(cell(i, c) for i, c in enumerate(r) if i > 0)
            + "</tr>"
            for r in table.rows
        )
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_e(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        muted = ' class="muted"' if block.muted else ""
        return f"<p{muted}>{_e(block.text)}</p>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{_e(v)}</li>" for v in block.values) + "</ul>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return f'<img alt="{_e(block.alt)}" src="data:image/png;base64,{data}">'
    return f"<blockquote><p>{_e(block.text)}</p><footer>{_e(block.source)}</footer></blockquote>"


def render_html(document: ReportDocument) -> str:
    """``document`` as one self-contained HTML page: figures as ``data:`` URIs, every
    string escaped."""
    head = [
        "<!DOCTYPE html>",
        f'<html lang="{_e(document.language)}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(document.title)}</title><style>{_CSS}</style></head><body>",
    ]
    body = [_html_block(b) for b in document.blocks]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"


def html_report(
    result: Interpretation,
    survey: Survey,
    summary: SurveySummary,
    *,
    versions: Versions | None = None,
    figures: bool = True,
    unresolved: Sequence[str] = (),
) -> str:
    """The report as one self-contained HTML page, in ``result.language``: the blocks of
    :func:`report_document` (arguments as there) rendered by :func:`render_html`.

    Raises:
        ValueError: ``result.language`` is neither ``"fr"`` nor ``"en"``.
        ImportError: ``figures`` and matplotlib is not installed (the message names the
            extra).
    """
    document = report_document(
        result, survey, summary, versions=versions, figures=figures, unresolved=unresolved
    )
    return render_html(document)


#: The file name endings a report may be written to, and the format each gets.
REPORT_FORMATS: dict[str, str] = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def report_format(path: str | os.PathLike[str]) -> str:
    """``"html"`` or ``"pdf"``: the format a report file name asks for, by its ending.

    Raises:
        ValueError: The name ends in neither ``.html``/``.htm`` nor ``.pdf`` (the message
            names the file).

    Example:
        >>> report_format("survey.PDF"), report_format("out.html")
        ('pdf', 'html')
    """
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_FORMATS:
        raise ValueError(
            f"report {os.fspath(path)}: expected a file name ending in .html, .htm or .pdf"
        )
    return REPORT_FORMATS[suffix]


def report_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a report's file name, checked before any work is done.

    Raises:
        FileNotFoundError: The folder of ``path`` does not exist (the message names it).
        ValueError: ``path`` is a folder, or its name ends in neither ``.html``/``.htm``
            nor ``.pdf``.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"report {target}: the folder {folder} does not exist")
    if target.is_dir():
        raise ValueError(f"report {target}: is a folder, not a file name")
    report_format(target)
    return target


def write_report(path: str | os.PathLike[str], page: str | bytes) -> Path:
    """Write ``page`` (an HTML page, or a PDF's bytes) to ``path`` whole or not at all
    (a temporary file beside it, renamed).

    Raises:
        FileNotFoundError: The folder of ``path`` does not exist (the message names it).
        ValueError: ``path`` is a folder or has no report ending, or ``page`` does not
            match it (text for ``.pdf``, bytes for ``.html``).
    """
    target = report_target(path)
    if isinstance(page, bytes) != (report_format(target) == "pdf"):
        kind = "bytes" if isinstance(page, bytes) else "text"
        raise ValueError(f"report {target}: {kind} given for a {target.suffix} file")
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        if isinstance(page, bytes):
            tmp.write_bytes(page)
        else:
            tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
