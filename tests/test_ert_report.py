"""Only words that can be defended, and a report to hand over.

A model sentence is kept only when it is fluent in the report's language and speaks of
the ground (the issue's French nonsense is dropped with a warning); no degenerate range;
no English sentence in a French report; ``setraf interpret FILE --report out.html`` writes
one self-contained HTML file where every outside string is escaped.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM

from langchain_setraf.ert import interpretation_chain, load_survey, summarize
from langchain_setraf.ert.checks import useful_text
from langchain_setraf.ert.cli import render_markdown
from langchain_setraf.ert.fluency import check_fluency, sentence_language, speaks_of_ground
from langchain_setraf.ert.interpretation import coerce_choices, render, spec_of
from langchain_setraf.ert.rendering import span
from langchain_setraf.ert.report import collect_versions, html_report, write_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "two_layer_wenner.dat"
DATA = Path(__file__).resolve().parent / "data" / "ert"
#: The bundled example and every real survey file the readers load.
CASES = [EXAMPLE, *sorted(p for p in DATA.iterdir() if p.suffix not in (".md", ".txt"))]

#: Sentences a small model wrote in the issue and in the quality benchmark's stored runs.
NONSENSE_FR = (
    "ce cuirassage de l'addition à la formation du métérelle d'un groupe. "
    "elevite de l'addition à la formation du métérelle d'un groupe."
)
BAD_FR = {
    "une des résistance chacuralees.": "warn.not_fluent",
    "une de la variety des amérations.": "warn.not_fluent",
    "Une erreur de l'auteur sur le papier.": "warn.off_topic",
    "Le groupe est ensemble de choses.": "warn.off_topic",
    "unite de la limite.": "warn.fragment",
    # SmolLM2 on resipy_res2dinv_dd.dat (a French word list, nothing about the ground)
    "la couleur des mères dans la formation du cérémonie de l'utilisateur pour les façons "
    "d'ent.": "warn.off_topic",
}
GOOD_FR = (
    "La couche conductrice est probablement une argile saturée.",
    "Les sables et graviers saturés forment l'aquifère sous la nappe.",
    "Le substratum résistant pourrait être un granite altéré ou une saprolite.",
)
#: A good sentence that names no material (so no unit's choice can contradict it).
GOOD_GROUND = "Une couche conductrice repose sur une unité plus résistante."
BAD_EN = ("The data is from a file.", "The report is incomplete and short.")
GOOD_EN = ("The upper unit is probably clay over a more resistive unit.",)


@pytest.fixture(scope="module")
def two_layer_fr() -> Any:
    return summarize(load_survey(EXAMPLE), language="fr")


def test_the_issues_french_nonsense_is_dropped_with_a_warning(two_layer_fr: Any) -> None:
    kept, warnings = useful_text(f"{NONSENSE_FR} {GOOD_FR[0]}", two_layer_fr, "fr", "")
    assert kept == GOOD_FR[0]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(
        "la phrase du modèle n'est pas du français correct (mots inconnus ou étrangers : "
        "cuirassage, métérelle) ; écartée : "
    )
    assert "elevite, métérelle" in warnings[1]


@pytest.mark.parametrize(("sentence", "why"), sorted(BAD_FR.items()))
def test_real_bad_french_sentences_are_dropped_and_say_why(
    sentence: str, why: str, two_layer_fr: Any
) -> None:
    from langchain_setraf.ert.i18n import text

    kept, warnings = useful_text(sentence, two_layer_fr, "fr", "")
    assert kept == ""
    head = text("fr", why, words="§", text="§").split("§")[0]
    assert len(warnings) == 1 and warnings[0].startswith(head), warnings


def test_real_good_sentences_are_kept(two_layer_fr: Any) -> None:
    kept, warnings = useful_text(" ".join(GOOD_FR), two_layer_fr, "fr", "")
    assert kept == " ".join(GOOD_FR) and warnings == []
    en = summarize(load_survey(EXAMPLE), language="en")
    kept, warnings = useful_text(" ".join(BAD_EN + GOOD_EN), en, "en", "")
    assert kept == GOOD_EN[0]
    assert [w.split(";")[0] for w in warnings] == ["the model's sentence says nothing about "
                                                   "the ground"] * 2  # fmt: skip


def test_a_sentence_cut_at_the_fields_length_is_dropped(two_layer_fr: Any) -> None:
    spec = spec_of(two_layer_fr)
    cut = "Une couche conductrice repose sur une unité plus résistante qui pourrait être un"
    long = {"reason": cut + " granite altéré très fracturé et saturé sous la nappe"}
    choices, _ = coerce_choices(spec, {spec.units[0].name: long}, language="fr")
    reason = choices.units[0].reason
    assert reason.endswith("…") and len(reason) <= 90
    assert choices.free_text()[-1] == reason  # no period after the cut
    kept, warnings = useful_text(" ".join(choices.free_text()), two_layer_fr, "fr", "")
    assert kept == ""
    assert warnings[0].startswith("la phrase du modèle a été coupée à la longueur du champ")
    whole = "Une couche conductrice repose sur une unité plus résistante."
    choices, _ = coerce_choices(spec, {spec.units[0].name: {"reason": whole}}, language="fr")
    assert choices.units[0].reason == whole  # a complete sentence is left as written


def test_fluency_and_language_of_a_sentence() -> None:
    english = "The most likely material is chalk and the alternative is sand."
    assert sentence_language(english) == "en"
    assert sentence_language(GOOD_FR[0]) == "fr"
    assert sentence_language("U1 : 51,2–83,1 Ω·m") is None
    assert not check_fluency(english, "fr").fluent
    assert {"the", "most"} <= set(check_fluency(english, "fr").foreign)
    assert check_fluency(GOOD_FR[1], "fr").fluent and check_fluency(GOOD_EN[0], "en").fluent
    assert not speaks_of_ground("Le modèle évoque une nappe sans la situer.", "fr")
    assert speaks_of_ground("Une nappe pourrait se trouver à la limite U1/U2.", "fr")
    with pytest.raises(ValueError, match="'de'"):
        check_fluency(GOOD_EN[0], "de")


def test_no_degenerate_range() -> None:
    assert span(3.85, 3.85, "fr") == "3,85" and span(3.85, 4.2, "fr") == "3,85–4,2"
    path = DATA / "geoelectrics_p3_wenner_ip.dat"  # its U1 is one pseudo-depth level
    summary = summarize(load_survey(path), language="fr")
    u1 = summary.units[0]
    assert span(u1.top, u1.bottom, "fr") == "1,04"
    choices, _ = coerce_choices(spec_of(summary), {}, source="default")
    out = render(summary, choices, "fr")
    assert "U1, 1,04 m :" in out.geology
    assert " à 1,04 m" in out.image_prompt
    for text in (out.geology, out.image_prompt):
        assert not re.search(r"(?<![\d,])(\d+(?:,\d+)?)(?:–| à )\1(?![\d,])", text), text


def test_the_prose_speaks_of_the_ground_not_of_the_model(two_layer_fr: Any) -> None:
    spec = spec_of(two_layer_fr)
    for water in ({"supported": True, "boundary": spec.boundaries[0]},  # resistivity rises
                  {"supported": True, "boundary": "none"}):  # fmt: skip
        choices, _ = coerce_choices(spec, {"water_table": water}, language="fr")
        out = render(two_layer_fr, choices, "fr")
        # ("pas de modèle" names the missing inverted model; "le modèle" would be the LLM)
        assert "le modèle" not in out.geology.lower(), out.geology
        assert "nappe" in out.geology


# -- whole French reports ---------------------------------------------------------------------
def _answer(path: Path) -> str:
    """A stand-in's French answer: the issue's nonsense, a good sentence, an off-list
    material, one-word reasons and an English explanation."""
    spec = spec_of(summarize(load_survey(path)))
    reasons = ["decreased", GOOD_GROUND, "unanswerable"] * len(spec.units)
    out: dict[str, Any] = {
        u.name: {
            "material": u.candidates[0],
            "alternative": u.candidates[-1],
            "confidence": "low",
            "reason": reason,
        }
        for u, reason in zip(spec.units, reasons, strict=False)
    }
    out["summary"] = NONSENSE_FR
    for i, a in enumerate(spec.anomalies):  # one English explanation, the others French
        said = "The anomaly is a wet clay lens." if i == 0 else "Cette anomalie reste à vérifier."
        out[a.name] = {"cause": a.causes[0], "explanation": said}
    if spec.boundaries:
        out["water_table"] = {"supported": True, "boundary": "none"}
    return json.dumps(out, ensure_ascii=False)


def _interpret(path: Path, language: str = "fr") -> tuple[Any, Any, Any]:
    survey = load_survey(path)
    summary = summarize(survey, language=language)
    llm = FakeListLLM(responses=[_answer(path)])
    return survey, summary, interpretation_chain(llm, language).invoke({"survey": summary})


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"\n|(?<=[.;:!?])\s+", text) if s.strip()]


def _ours(text: str, survey: Any) -> str:
    """The package's own words in a report: what the file says (its name, its title) and
    what a warning quotes of a dropped model sentence are data, shown as read."""
    text = text.replace(survey.path.name, " ")
    if survey.title:
        text = text.replace(survey.title, " ")
    text = re.sub(r"\(mots inconnus ou étrangers : [^)]*\)", " ", text)
    return re.sub(r"écartée? : .*", " ", text)


def _visible(page: str) -> str:
    """The text a reader sees in the HTML page."""
    return html.unescape(re.sub(r"<style>.*?</style>|<[^>]+>", "\n", page, flags=re.S))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_a_french_report_has_no_english_sentence_and_no_unfluent_model_sentence(
    path: Path,
) -> None:
    survey, summary, result = _interpret(path)
    page = html_report(result, survey, summary, versions=collect_versions(), figures=False)
    markdown = render_markdown(result, summary)
    for text in (markdown, _visible(page)):
        english = [s for s in _sentences(_ours(text, survey)) if sentence_language(s) == "en"]
        assert not english, english
    assert "cuirassage" not in result.model_notes
    assert any("cuirassage" in w for w in result.warnings), result.warnings
    for s in _sentences(result.model_notes):
        assert check_fluency(s, "fr").fluent, s
    assert "decreased" not in page and "unanswerable" not in page  # one-word reasons
    if len(summary.units) >= 2:  # the good reason of U2 survives the checks
        assert GOOD_GROUND in result.model_notes


# -- the HTML report ----------------------------------------------------------------------------
_REF = re.compile(r"\b(?:src|href|action|srcset|poster)\s*=\s*(?![\"']?data:)|url\(|@import", re.I)


def _external(page: str) -> list[str]:
    """Whatever in the page could load something from elsewhere: a URL anywhere, or a tag
    attribute or style rule that refers to anything but an embedded ``data:`` URI."""
    found = re.findall(r"https?:|ftp:|file:|//[\w.-]+\.\w", page, re.I)
    found += [tag[:80] for tag in re.findall(r"<[^>]*>", page) if _REF.search(tag)]
    style = "".join(re.findall(r"<style>(.*?)</style>", page, re.S))
    return found + [m for m in re.findall(r"url\(|@import", style)]


def test_the_html_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    survey, summary, result = _interpret(EXAMPLE)
    page = html_report(result, survey, summary, versions=collect_versions(EXAMPLE, "gguf"))
    assert not _external(page), _external(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(images) == 1 and len(images[0]) > 10_000  # the pseudo-section, embedded
    visible = _visible(page)
    for heading in ("Faits du levé", "Coupes", "Unités", "Interprétation", "Recommandations",
                    "Méthode et limites", "Ce que les données ne peuvent pas résoudre",
                    "Limites", "Avertissements (vérifications)", "Versions utilisées"):  # fmt: skip
        assert f"\n{heading}\n" in visible, heading
    assert "Aucune inversion n'a été faite" in visible
    for unit in result.units:
        assert f"\n{unit.name}\n" in visible
    assert "langchain-setraf " in visible and "two_layer_wenner.dat (sha256 " in visible
    target = write_report(tmp_path / "r.html", page)
    assert target.read_text(encoding="utf-8") == page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary left


def test_every_outside_string_is_escaped(tmp_path: Path) -> None:
    hostile = tmp_path / "<img src=x onerror=alert(1)><script>alert(1)<!--.dat"
    shutil.copy(EXAMPLE, hostile)
    survey = load_survey(hostile)
    summary = summarize(survey, language="fr")
    spec = spec_of(summary)
    answer = {"summary": "<script>alert(2)</script> La couche est une argile."}
    answer |= {spec.units[0].name: {"material": "<b>clay</b>", "reason": "<script>x</script>"}}
    llm = FakeListLLM(responses=[json.dumps(answer)])
    result = interpretation_chain(llm, "fr").invoke({"survey": summary})
    assert any("<script>" in w for w in result.warnings)  # quoted in a warning
    page = html_report(result, survey, summary, versions=collect_versions(hostile), figures=False)
    low = page.lower()
    assert "<script" not in low and "<img src=x" not in low and "<b>" not in low
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert html.escape(hostile.name) in page
    assert not _external(page)


def test_an_inverted_section_is_drawn_and_its_method_stated() -> None:
    pytest.importorskip("matplotlib")
    from langchain_setraf.ert.model_section import ModelSection

    survey = load_survey(EXAMPLE)
    # a small hand-made two-layer model (no SimPEG needed): 50 Ω·m over 500 Ω·m at 6 m
    xs = [2.0 + 4.0 * i for i in range(15)]
    depths = [1.0 + 2.0 * k for k in range(8)]
    cells = [(x, d) for d in depths for x in xs]
    section = ModelSection(
        x=tuple(x for x, _ in cells), depth=tuple(d for _, d in cells),
        width=(4.0,) * len(cells), height=(2.0,) * len(cells),
        rho=tuple(50.0 if d < 6 else 500.0 for _, d in cells),
        coverage=tuple(1.0 if d < 12 else 1e-4 for _, d in cells),
        doi_m=12.0, chi2=0.9, rms_percent=2.9, iterations=4, stopped_by="target",
        rhoa_observed=(1.0,), rhoa_predicted=(1.0,), library="simpeg 0.25.2",
    )  # fmt: skip
    summary = summarize(survey, language="fr", model=section)
    llm = FakeListLLM(responses=[_answer(EXAMPLE)])
    result = interpretation_chain(llm, "fr").invoke({"survey": summary})
    page = html_report(result, survey, summary, versions=collect_versions(None, None, "simpeg"))
    visible = _visible(page)
    assert page.count("data:image/png;base64,") == 1
    assert "Section inversée (ρ du modèle)" in page  # the figure's alt text names both
    assert "\nsimpeg 0.25.2\n" in visible and "\nitérations\n" in visible and "\n4\n" in visible
    assert "\narrêt par\n" in visible and "Aucune inversion" not in visible
    assert not [s for s in _sentences(_ours(visible, survey)) if sentence_language(s) == "en"]


def test_what_the_data_cannot_resolve_is_said_in_the_reports_language() -> None:
    from langchain_setraf.ert.report import unresolved_sentences

    codes = ("below_doi", "basement_lower_bound", "conductor_equivalence")
    fr = unresolved_sentences(codes, "fr", doi_m=16.5, basement_rho=123.0, conductance_s=0.233)
    assert fr == [
        "Rien n'est résolu sous la profondeur d'investigation (16,5 m).",
        "La résistivité du substratum résistant n'est qu'une borne inférieure (au moins "
        "123 Ω·m) : la vraie valeur peut être bien plus élevée.",
        "Le conducteur au-dessus n'est connu que par sa conductance (0,233 S, épaisseur / "
        "résistivité) : son épaisseur et sa résistivité se compensent.",
    ]
    assert "at least 123 Ω·m" in unresolved_sentences(codes, "en", basement_rho=123.0)[1]
    with pytest.raises(ValueError, match="'nope'"):
        unresolved_sentences(["nope"], "fr")
    survey, summary, result = _interpret(EXAMPLE)
    page = html_report(result, survey, summary, figures=False, unresolved=fr[1:])
    visible = _visible(page)
    head = visible.index("Ce que les données ne peuvent pas résoudre")
    assert visible.index("borne inférieure (au moins 123 Ω·m)") > head
    assert visible.index("0,233 S") > head


def test_an_english_report_has_no_french_sentence_and_progress_follows_the_language() -> None:
    from langchain_setraf.ert.model_section import InversionProgress
    from langchain_setraf.ert.report import progress_text

    survey, summary, result = _interpret(EXAMPLE, "en")
    visible = _visible(html_report(result, survey, summary, figures=False))
    assert "\nSurvey facts\n" in visible and "\nVersions used\n" in visible
    french = [s for s in _sentences(_ours(visible, survey).replace("dropped:", "écartée :"))
              if sentence_language(s) == "fr"]  # fmt: skip
    assert not french, french
    p = InversionProgress(3, 10, 1.234, 0.5, 12.34)
    assert progress_text(p, "fr") == "itération 3/10 : χ² 1,23, β 0,5, 12,3 s"
    assert progress_text(p, "en") == "iteration 3/10: χ² 1.23, β 0.5, 12.3 s"


# -- the command line -------------------------------------------------------------------------
def test_cli_writes_the_report_and_refuses_a_bad_path_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import langchain_setraf.ert.cli as ert_cli
    from langchain_setraf.cli import main

    built: list[Any] = []

    def fake_llm(uri: str, given: Any, defaults: Any) -> Any:  # isolates the CLI's wiring
        built.append(uri)
        return FakeListLLM(responses=[_answer(EXAMPLE)])

    monkeypatch.setattr(ert_cli, "build_llm", fake_llm)
    out = tmp_path / "rapport.html"
    assert main(["interpret", str(EXAMPLE), "--report", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"rapport écrit dans {out}" in err  # the default language, French
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="fr">' in page
    assert "data:image/png;base64," in page and not _external(page)
    assert "SmolLM2" in page and "(sha256 " in page  # the default model, named and hashed
    missing = tmp_path / "no" / "such" / "r.html"
    assert main(["interpret", str(EXAMPLE), "--report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"setraf: error: report {missing}: the folder {missing.parent} does not exist" in err
    assert "reading" not in err  # refused before the survey is read
    assert main(["interpret", str(EXAMPLE), "--report", str(tmp_path)]) == 2
    assert "is a folder, not a file name" in capsys.readouterr().err


def _pdf_text(pdf: bytes) -> str:
    """The text of a PDF as pypdf reads it, whitespace made single spaces."""
    import io

    from pypdf import PdfReader

    pages = PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pages)


def test_cli_writes_a_pdf_report_with_the_words_of_the_html_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--report out.pdf`` writes a PDF holding every heading, paragraph and list item the
    HTML report shows (one document, two renderings), with its title and language set; a
    name with another ending is refused before the survey is read."""
    from pypdf import PdfReader

    import langchain_setraf.ert.cli as ert_cli
    from langchain_setraf.cli import main
    from langchain_setraf.ert.report import Heading, Items, Paragraph, report_document

    def fake_llm(uri: str, given: Any, defaults: Any) -> Any:  # isolates the CLI's wiring
        return FakeListLLM(responses=[_answer(EXAMPLE)])

    monkeypatch.setattr(ert_cli, "build_llm", fake_llm)
    out = tmp_path / "rapport.pdf"
    assert main(["interpret", str(EXAMPLE), "--report", str(out)]) == 0
    assert f"rapport écrit dans {out}" in capsys.readouterr().err
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    reader = PdfReader(out)
    assert reader.metadata is not None and reader.metadata.title == (
        f"Interprétation ERT : {EXAMPLE.name}"
    )
    assert b"/Lang (fr)" in pdf or b"/Lang(fr)" in pdf
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, nothing beside it
    text = _pdf_text(pdf)
    # the same document the HTML report renders: every word block is in the PDF's text
    summary = summarize(load_survey(EXAMPLE), language="fr")
    result = interpretation_chain(fake_llm("", {}, {}), "fr").invoke({"survey": summary})
    document = report_document(result, load_survey(EXAMPLE), summary, figures=False)
    words = [b.text for b in document.blocks if isinstance(b, Heading | Paragraph)]
    words += [v for b in document.blocks if isinstance(b, Items) for v in b.values]
    assert len(words) > 15
    missing = [w for w in words if " ".join(w.split()) not in text]
    assert not missing, missing
    assert "Versions utilisées" in text and "SmolLM2" in text
    bad = tmp_path / "rapport.txt"
    assert main(["interpret", str(EXAMPLE), "--report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"report {bad}: expected a file name ending in .html, .htm or .pdf" in err
    assert "lecture" not in err and not bad.exists()  # refused before the survey is read


def test_pdf_text_from_outside_is_written_as_text_not_read_as_markup() -> None:
    """A file name or model sentence that looks like markup or PDF operators, or holds
    characters the font lacks, is printed as written: the PDF shows it verbatim and gains
    no page, font or object from it."""
    from pypdf import PdfReader

    from langchain_setraf.ert.report import Heading, Paragraph, ReportDocument
    from langchain_setraf.ert.report_pdf import render_pdf

    hostile = "<b>gras</b> **x** ) Tj ET BT /F1 99 Tf (injecté) Tj \\ %%EOF"
    plain = render_pdf(ReportDocument("t", "fr", (Heading("t", 1), Paragraph("abc"))))
    pdf = render_pdf(ReportDocument("t", "fr", (Heading("t", 1), Paragraph(hostile))))
    assert hostile in _pdf_text(pdf)
    assert len(PdfReader(__import__("io").BytesIO(pdf)).pages) == 1
    assert pdf.count(b"/Font") == plain.count(b"/Font") and pdf.count(b"%%EOF") == 1


def test_write_report_refuses_a_page_that_does_not_match_the_name(tmp_path: Path) -> None:
    """Text for a ``.pdf`` or bytes for a ``.html`` is an error that names the file, and
    leaves nothing behind (an existing report is kept as it was)."""
    kept = tmp_path / "r.pdf"
    kept.write_bytes(b"%PDF-1.4 earlier")
    with pytest.raises(ValueError, match=r"r\.pdf: text given for a \.pdf file"):
        write_report(kept, "<!DOCTYPE html>")
    with pytest.raises(ValueError, match=r"r\.html: bytes given for a \.html file"):
        write_report(tmp_path / "r.html", b"%PDF-")
    assert kept.read_bytes() == b"%PDF-1.4 earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pdf"]


@pytest.mark.slow
@pytest.mark.parametrize("language", ["fr", "en"])
def test_a_blocky_inversion_reports_a_basement_lower_bound_and_the_conductance(
    language: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``setraf interpret --invert --regularization blocky --report``: the bundled line
    (50 Ω·m over a 500 Ω·m basement at 6 m, exact values) says, in the HTML and the
    Markdown report alike, that the basement is only a lower bound and what the
    conductor's conductance is (6 m / 50 Ω·m = 0.12 S); the method is named blocky, with
    decimal commas in French, and the progress lines follow ``--lang``."""
    pytest.importorskip("discretize")
    import langchain_setraf.ert.cli as ert_cli
    from langchain_setraf.cli import main

    def fake_llm(uri: str, given: Any, defaults: Any) -> Any:  # isolates the CLI's wiring
        return FakeListLLM(responses=["{}"])

    monkeypatch.setattr(ert_cli, "build_llm", fake_llm)
    out = tmp_path / "report.html"
    argv = ["interpret", str(EXAMPLE), "--lang", language, "--report", str(out), "--invert",
            "--regularization", "blocky", "--error-percent", "1", "--error-floor", "0.1",
            "--max-iterations", "15"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    markdown, err = captured.out, captured.err
    visible = _visible(out.read_text(encoding="utf-8"))
    fr = language == "fr"
    figure = r"(\d+,\d+)" if fr else r"(\d+\.\d+)"
    bound = "borne inférieure (au moins " if fr else "only a lower bound (at least "
    for text in (visible, markdown):
        heading = "Ce que les données ne peuvent pas résoudre" if fr else "cannot resolve"
        assert heading in text
        assert bound in text, text
        rho = re.search(re.escape(bound) + r"(\d+) Ω·m", text)
        assert rho is not None and 0.75 * 500 <= float(rho.group(1)) <= 2000, text
        found = re.search(r"conductance \(" + figure + " S", text)
        assert found is not None, text
        assert 0.09 <= float(found.group(1).replace(",", ".")) <= 0.15, found.group(1)
        method = "inversion 2,5-D par blocs (IRLS)" if fr else "a blocky (IRLS) 2.5-D inversion"
        assert method in text and ("lissé" not in text if fr else "smooth" not in text), text
        assert re.search(r"χ² 0,\d\d" if fr else r"χ² 0\.\d\d", text), text
    # the units come from the layered fit of the data, and the method says so, with the
    # interface's depth and its standard deviation
    fitted = "ajusté aux données mesurées" if fr else "fitted to the measured data"
    assert fitted in visible and fitted in err
    assert ("Modèle tabulaire" if fr else "Layered model") in visible
    depth = re.search(r"\n" + figure + r" ± " + figure + r"\n", visible)
    assert depth is not None and 4.8 <= float(depth.group(1).replace(",", ".")) <= 7.2, visible
    if fr:
        assert "itération 1/15 (" in err and "inversion de 153 données (par blocs" in err
        assert "solveur " in err and "iteration " not in err and "wavenumbers" not in err
        done = next(ln for ln in err.splitlines() if "terminé en " in ln)
        assert "pic RSS " in done and " Mo" in done and "available" not in done, done
        assert re.search(r"RSS \d+,\d [MG]o \(anonyme ", done), done
    else:
        assert "iteration 1/15 (" in err and "inverting " in err and "itération" not in err
        done = next(ln for ln in err.splitlines() if "done in " in ln)
        assert re.search(r"RSS \d+\.\d [MG]B \(anonymous ", done) and "pic" not in done, done
