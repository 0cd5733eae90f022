"""One table of French/English strings: same keys and placeholders, and reports that keep
to their language (no English sentence in a French report, no French in an English one)."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM

from langchain_setraf.ert import interpretation_chain, load_survey, summarize
from langchain_setraf.ert.cli import render_markdown
from langchain_setraf.ert.i18n import LANGUAGES, MATERIALS_FR, TEXTS, Note, material_name, text
from langchain_setraf.ert.interpretation import spec_of

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_layer_wenner.dat"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_both_languages_define_the_same_keys_and_placeholders() -> None:
    assert set(LANGUAGES) == set(TEXTS) == {"en", "fr"}
    en, fr = TEXTS["en"], TEXTS["fr"]
    assert set(en) == set(fr), sorted(set(en) ^ set(fr))
    differ = {k: (_fields(en[k]), _fields(fr[k])) for k in en if _fields(en[k]) != _fields(fr[k])}
    assert not differ, differ
    assert all(v.strip() for table in TEXTS.values() for v in table.values())


def test_every_french_material_name_is_french() -> None:
    assert all(fr and fr != en for en, fr in MATERIALS_FR.items())
    assert material_name("clay", "en") == "clay" and material_name("clay", "fr") == "argile"


def test_unknown_language_or_key_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'de'"):
        text("de", "report.units")
    with pytest.raises(KeyError, match=r"report\.nope"):
        text("fr", "report.nope")
    with pytest.raises(ValueError, match=r"'render\.doi_depth'.*'d'"):
        text("fr", "render.doi_depth")


# -- whole reports ---------------------------------------------------------------------------
def _answer(language: str, path: Path) -> str:
    """A deterministic stand-in's answer that exercises every kind of warning: an off-list
    material, a confidence above the cap, a water table where resistivity rises, a number
    the survey does not support, and free text in the requested language."""
    spec = spec_of(summarize(load_survey(path)))
    words = {
        "fr": (
            "Une couche conductrice repose sur une unité plus résistante jusqu'à 900 m.",
            "Argile humide.",
        ),
        "en": (
            "A conductive layer lies over a more resistive unit down to 900 m.",
            "Wet clay here.",
        ),
    }[language]
    out: dict[str, Any] = {
        spec.units[0].name: {
            "material": "granite",  # not a candidate of U1
            "alternative": spec.units[0].candidates[-1],
            "confidence": "high",  # above the cap without site notes
            "reason": words[1],
        },
        "summary": words[0],  # 900 m: deeper than the section
    }
    if spec.boundaries:
        out["water_table"] = {"supported": True, "boundary": spec.boundaries[0]}
    return json.dumps(out, ensure_ascii=False)


def _report(language: str, path: Path) -> tuple[str, Any]:
    summary = summarize(load_survey(path), language=language)
    llm = FakeListLLM(responses=[_answer(language, path)])
    result = interpretation_chain(llm, language).invoke({"survey": summary})
    report = render_markdown(result, summary)
    # what the file itself says (its name, its title) is data, shown as read
    visible = report.replace(summary.survey.path.name, " ")
    if summary.survey.title:
        visible = visible.replace(summary.survey.title, " ")
    return visible, result


def _fragments(language: str) -> set[str]:
    """The literal text of ``language``'s table that the other language does not share:
    the pieces between placeholders, at least two words or eight letters long."""
    other = "fr" if language == "en" else "en"
    shared = "\n".join(TEXTS[other].values())
    out: set[str] = set()
    for key, template in TEXTS[language].items():
        if template == TEXTS[other][key]:
            continue
        for literal, *_ in string.Formatter().parse(template):
            for piece in re.split(r"[\n:;()]", literal):
                piece = piece.strip(" .,-–\"'")
                letters = sum(ch.isalpha() for ch in piece)
                if (len(piece.split()) >= 2 or letters >= 8) and piece not in shared:
                    out.add(piece)
    return out


ENGLISH_WORDS = ("unit", "units", "depth", "warning", "warnings", "file", "format", "caveats",
                 "candidates", "the", "and", "of", "model", "water", "resistivity", "median")  # fmt: skip
FRENCH_WORDS = ("unité", "unités", "profondeur", "avertissements", "fichier", "limites",
                "candidats", "les", "des", "modèle", "nappe", "résistivité", "médiane")  # fmt: skip

DATA = Path(__file__).resolve().parent / "data"
#: The example, a real file without reader notes, and real files whose readers note things
#: (a shifted line, resistances only, SETRAF's depth convention, a vertical log).
CASES = [
    EXAMPLE,
    DATA / "ert" / "gimli_bedrock.dat",
    DATA / "ert" / "geoelectrics_p3_wenner_ip.dat",
    DATA / "ert" / "gimli_slagdump.ohm",
    DATA / "ert" / "setraf_test_ert_data.csv",
]


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_a_french_report_carries_no_english(path: Path) -> None:
    visible, result = _report("fr", path)
    # the stand-in's answer reached every part: warnings of each kind and checked notes
    assert len(result.warnings) >= 3, result.warnings
    assert "valeurs par défaut" in visible or "n'est pas un des candidats" in visible
    assert "abaissée à 'moyenne'" in visible
    assert "900 m est plus profond que la coupe" in visible
    leaked = sorted(f for f in _fragments("en") if f in visible)
    assert not leaked, leaked
    words = sorted(
        w for w in ENGLISH_WORDS if re.search(rf"(?<![\w.-]){w}(?![\w-])", visible, re.I)
    )
    assert not words, words


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_an_english_report_carries_no_french(path: Path) -> None:
    visible, _ = _report("en", path)
    assert "lowered to 'medium'" in visible
    assert "900 m is deeper than the section" in visible
    leaked = sorted(f for f in _fragments("fr") if f in visible)
    assert not leaked, leaked
    words = sorted(w for w in FRENCH_WORDS if re.search(rf"(?<![\w.-]){w}(?![\w-])", visible, re.I))
    assert not words, words


def test_the_facts_block_and_table_headers_follow_the_language() -> None:
    visible, _ = _report("fr", EXAMPLE)
    assert "- **type de fichier** : res2dinv" in visible
    assert "- **profondeur** : pseudo-profondeur = profondeur médiane" in visible
    assert "| unité | profondeur (m) | ρ p10 | ρ médiane |" in visible
    english, _ = _report("en", EXAMPLE)
    assert "- **format**: res2dinv" in english
    assert "- **depth**: pseudo-depth = Edwards median depth" in english
    assert "| unit | depth (m) | ρ p10 | ρ median |" in english


SAMPLES = sorted(
    p for d in ("ert", "ert_formats") for p in (DATA / d).iterdir() if p.suffix != ".md"
)


def test_every_reader_note_of_every_sample_translates() -> None:
    """What the readers note about a file (rows dropped and why, topography, resistances)
    is a :class:`Note`: English as before, French on demand, with no English left in it."""
    seen = 0
    english = _fragments("en")
    for path in SAMPLES:
        for note in load_survey(path).notes:
            seen += 1
            assert isinstance(note, Note), (path.name, note)
            fr = note.in_language("fr")
            assert fr != note and note.in_language("en") == note
            leaked = sorted(f for f in english if f in fr)
            assert not leaked, (path.name, fr, leaked)
            words = [w for w in ENGLISH_WORDS if re.search(rf"(?<![\w.-]){w}(?![\w-])", fr, re.I)]
            assert not words, (path.name, fr, words)
    assert seen >= 30  # every kind of note the samples hold


def test_a_french_summary_puts_the_reader_notes_in_french() -> None:
    path = DATA / "ert_formats" / "syscal_prosys3_degenerate_rows.csv"
    survey = load_survey(path)
    dropped = next(n for n in survey.notes if "dropped" in n)
    fr = summarize(survey, language="fr").caveats
    en = summarize(survey, language="en").caveats
    assert dropped in en and dropped not in fr
    assert any(
        c.startswith("2 ligne(s) de mesure inutilisable(s) écartée(s)")
        and "ligne 3 : une électrode de courant et une de potentiel sont à la même position ; "
        "ligne 5 : géométrie d'électrodes dégénérée : facteur géométrique infini"
        in c
        for c in fr
    ), fr


def test_a_note_survives_pickling_with_its_key() -> None:
    import pickle

    note = load_survey(DATA / "ert_formats" / "unified_zero_current.ohm").notes[-1]
    back = pickle.loads(pickle.dumps(note))
    assert isinstance(back, Note) and back == note and back.key == note.key
    assert back.in_language("fr") == note.in_language("fr")
