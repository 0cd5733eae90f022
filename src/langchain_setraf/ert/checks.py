"""Which sentences of a model's free text are worth showing beside the written prose.

A sentence is kept only when it is in the requested language and fluent in it (a
word-frequency check, :mod:`~langchain_setraf.ert.fluency`), speaks of the ground (not of
the model or the form), is not copied from the prompt, names nothing the input does not,
agrees with the model's own choices and states no depth or resistivity the survey does not
support. Every dropped sentence becomes a warning (in
the requested language) that says why.

Example:
    >>> detect_language("La couche est une argile saturée par la nappe.")
    'fr'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_setraf.ert.fluency import MIN_WORDS, check_fluency, speaks_of_ground
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.i18n import MATERIALS_FR, check_language, material_name
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.parsing import CUT, Choices
from langchain_setraf.ert.summary import SurveySummary

__all__ = ["detect_language", "useful_text"]


_STOP = {
    "en": set(
        "the of and a an to in is are was were be this that it its with for on as by from "
        "or at which these there not can may most likely layer water unit".split()
    ),
    "fr": set(
        "le la les des du de un une et est sont dans pour par sur avec au aux ce cette ces "
        "qui que ne pas il elle se son sa ses peut plus couche eau unité".split()
    ),
}
_WORD = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœ']+", re.I)


def detect_language(text: str) -> str | None:
    """``"fr"``, ``"en"`` or ``None`` (too few stop words), from stop-word counts."""
    words = [w.lower().strip("'") for w in _WORD.findall(text)]
    fr = sum(w in _STOP["fr"] for w in words)
    en = sum(w in _STOP["en"] for w in words)
    if max(fr, en) < 2 or fr == en:
        return None
    return "fr" if fr > en else "en"


_SENTENCE = re.compile(r"(?<=[.!?…])\s+")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,}(?:\s+[A-Z][a-z]+)*)")


def _copied(sentence: str, low_prompt: str, n: int = 4) -> bool:
    """Whether the sentence is lifted from the prompt (half its word 4-grams are there)."""
    words = [w.lower() for w in _WORD.findall(sentence)]
    if sentence.lower() in low_prompt:
        return True
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return False
    prompt_words = " ".join(w.lower() for w in _WORD.findall(low_prompt))
    return sum(g in prompt_words for g in grams) >= 0.5 * len(grams)


_LABEL = re.compile(r"\b([UA]\d+)\b")
_LABELLED = re.compile(r"\b(U\d+)\s*[:=(–-]\s*([^,;|)]+)")
_ALL_MATERIALS = sorted({*MATERIALS_FR, *MATERIALS_FR.values()}, key=len, reverse=True)


def _contradiction(sentence: str, choices: Choices | None) -> str | None:
    """What in the sentence contradicts the choices: a unit given another material, or a
    material that no unit has as its choice or alternative."""
    if choices is None:
        return None
    chosen = {c.name: c.material for c in choices.units}
    for m in _LABELLED.finditer(sentence):
        label, said = m.group(1), m.group(2).lower()
        mat = chosen.get(label)
        named = next((x for x in _ALL_MATERIALS if x.lower() in said), None)
        if mat is not None and named is not None:
            if named not in (mat, material_name(mat, "fr")):
                return label
    allowed = {x for c in choices.units for m in (c.material, c.alternative)
               for x in (m, material_name(m, "fr"))}  # fmt: skip
    allowed |= {x for a in choices.anomalies for x in (a.cause, material_name(a.cause, "fr"))}
    low = sentence.lower()
    for name in _ALL_MATERIALS:
        if name.lower() in low:
            if name not in allowed and not any(name.lower() in a.lower() for a in allowed):
                return name
            low = low.replace(name.lower(), " ")
    return None


_MARKUP = re.compile(r"[<>{}\[\]|\\]")
_META = {"sentence", "sentences", "phrase", "phrases", "json", "form", "formulaire", "numbers",
         "chiffres"}  # fmt: skip


def _junk(sentence: str) -> str | None:
    """Why the sentence is not prose (the :mod:`~langchain_setraf.ert.i18n` key of markup,
    instructions, a loop), or ``None``."""
    if _MARKUP.search(sentence):
        return "junk.markup"
    words = [w.lower() for w in _WORD.findall(sentence)]
    if any(w in _META for w in words):
        return "junk.meta"
    grams = [" ".join(words[i : i + 3]) for i in range(len(words) - 2)]
    if grams and max(grams.count(g) for g in grams) >= 3:
        return "junk.repeated"
    return None


def useful_text(
    text: str,
    summary: SurveySummary,
    language: str,
    prompt: str,
    choices: Choices | None = None,
    quoted: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """Keep the sentences of the model's free text that are worth showing.

    A sentence is dropped when it copies the prompt or the file's title, is a fragment or
    not fluent ``language`` (:func:`~langchain_setraf.ert.fluency.check_fluency`), says
    nothing about the ground or speaks of the model instead
    (:func:`~langchain_setraf.ert.fluency.speaks_of_ground`), names something
    (a capitalised name, a unit label) the input does not contain, gives a unit another
    material than ``choices`` do, or states a depth or resistivity the survey does not
    support. The whole text is dropped when it is not in ``language``. A figure the
    survey does not support is kept only when one of the ``quoted`` passages (the site
    notes the report quotes) states it.

    Returns:
        The kept text (possibly empty) and warnings, in ``language``, saying what was
        dropped and why.

    Raises:
        ValueError: ``language`` is neither ``"fr"`` nor ``"en"``.
    """
    check_language(language)
    warnings: list[str] = []
    text = " ".join(text.split())
    if len(text) < 12:
        return "", warnings
    lang = detect_language(text)
    if lang is not None and lang != language:
        warnings.append(tr(language, "warn.wrong_language", text=repr(text[:80])))
        return "", warnings
    title = " ".join(summary.survey.title.split()).lower() if summary.survey.title else ""
    low_prompt = prompt.lower()
    kept: list[str] = []
    for sentence in _SENTENCE.split(text):
        s = sentence.strip().lstrip("-*• ").strip()
        if len(s) < 12 or len(_WORD.findall(s)) < 3:
            continue
        if (title and (title in s.lower() or s.lower().rstrip(".") in title)) or _copied(
            s, low_prompt
        ):
            warnings.append(tr(language, "warn.copied", text=repr(s[:80])))
            continue
        known = {u.name for u in summary.units} | {
            f"A{i + 1}" for i in range(len(summary.anomalies))
        }
        ghost = sorted(set(_LABEL.findall(s)) - known)
        if ghost:
            warnings.append(
                tr(language, "warn.ghost_labels", labels=", ".join(ghost), text=repr(s[:80]))
            )
            continue
        if s.endswith(CUT):
            warnings.append(tr(language, "warn.cut_off", text=repr(s[:80])))
            continue
        junk = _junk(s)
        if junk is not None:
            warnings.append(tr(language, "warn.junk", reason=tr(language, junk), text=repr(s[:80])))
            continue
        fluency = check_fluency(s, language)
        if fluency.words < MIN_WORDS:
            warnings.append(tr(language, "warn.fragment", text=repr(s[:80])))
            continue
        if not fluency.fluent:
            words = ", ".join(fluency.bad)
            warnings.append(tr(language, "warn.not_fluent", words=words, text=repr(s[:80])))
            continue
        if not speaks_of_ground(s, language):
            warnings.append(tr(language, "warn.off_topic", text=repr(s[:80])))
            continue
        other = _contradiction(s, choices)
        if other is not None:
            warnings.append(tr(language, "warn.contradiction", what=other, text=repr(s[:80])))
            continue
        invented = [n for n in _NAME.findall(s) if n.lower() not in low_prompt]
        if invented:
            warnings.append(
                tr(language, "warn.invented", names=", ".join(invented), text=repr(s[:80]))
            )
            continue
        bad = check_numbers(s, summary, language, quoted)
        if bad:
            warnings += [
                tr(language, "warn.number_dropped", warning=w, text=repr(s[:80])) for w in bad
            ]
            continue
        if s in kept:
            warnings.append(tr(language, "warn.repeated", text=repr(s[:80])))
            continue
        kept.append(s)
    return " ".join(kept), warnings
