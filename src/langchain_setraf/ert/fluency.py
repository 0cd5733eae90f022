"""Whether a sentence reads as fluent French or English, and whether it speaks of the ground.

A small model writes sentences that pass every number and name check and still mean
nothing: *"ce cuirassage de l'addition à la formation du métérelle d'un groupe"*. This
module judges a sentence by the words it uses, with the word frequencies of ``wordfreq``
(Wikipedia, subtitles, news, books, web text…):

- a word is **unknown** when it is rarer than :data:`MIN_ZIPF` in the language (fewer than
  one per 100 million words: in practice, absent from the language's word list) and is not
  in the package's own vocabulary (its French/English strings, the reference materials,
  :data:`GROUND_WORDS`);
- a word is **foreign** when it is at least :data:`FOREIGN_MARGIN` Zipf units more frequent
  in the other language (``the``, ``most``, ``variety`` in French; ``une``, ``couche`` in
  English) and is not a material or ground word of the language (``till``);
- a sentence is **fluent** when it has at least :data:`MIN_WORDS` words of three letters or
  more, none of them unknown, and at most :data:`MAX_FOREIGN_SHARE` of them foreign;
- a sentence **speaks of the ground** when it names a unit or anomaly label, a material, or
  a word of :data:`GROUND_WORDS` (layer, water table, resistivity…), and names neither the
  model nor the report (:data:`ABOUT_TEXT_WORDS`).

Example:
    >>> check_fluency("ce cuirassage de l'addition à la formation du métérelle d'un groupe.",
    ...               "fr").bad
    ('cuirassage', 'métérelle')
    >>> check_fluency("La couche conductrice est probablement une argile saturée.", "fr").fluent
    True
    >>> sentence_language("The most likely material is chalk and the alternative is sand.")
    'en'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from langchain_setraf.ert.i18n import MATERIALS_FR, TEXTS, check_language

__all__ = [
    "ABOUT_TEXT_WORDS",
    "FOREIGN_MARGIN",
    "GROUND_WORDS",
    "MAX_FOREIGN_SHARE",
    "MIN_WORDS",
    "MIN_ZIPF",
    "Fluency",
    "check_fluency",
    "sentence_language",
    "speaks_of_ground",
]

#: A word rarer than this (Zipf scale: log10 of occurrences per billion words) is unknown
#: (real rare words of the trade, "colluvions" 1.4, "altérites" 1.3, pass; invented ones,
#: "métérelle", "résistivement", are absent: 0).
MIN_ZIPF = 1.0
#: A word this many Zipf units more frequent in the other language is foreign.
FOREIGN_MARGIN = 1.5
#: At most this share of a sentence's words may be foreign (a loan word or a name passes).
MAX_FOREIGN_SHARE = 0.2
#: A sentence has at least this many words of three letters or more.
MIN_WORDS = 3

#: Words that make a sentence a statement about the ground (besides materials and labels).
GROUND_WORDS: dict[str, frozenset[str]] = {
    "fr": frozenset(
        "couche couches unité unités sol sols sous-sol terrain terrains roche roches "
        "rocheux substratum socle nappe nappes eau eaux aquifère aquifères résistivité "
        "résistivités résistant résistante résistants résistantes conducteur conductrice "
        "conducteurs conductrices conductivité saturé saturée saturés saturées humide "
        "humides sec sèche secs sèches anomalie anomalies limite limites interface "
        "dépôt dépôts sédiment sédiments sédimentaire profondeur "
        "épaisseur argileux argileuse sableux sableuse altéré altérée fracturé fracturée "
        "poreux poreuse lentille cavité vide remblai déchets lixiviat karst socle "
        "piézomètre piézométrique forage puits paléochenal colluvions altérites".split()
    ),
    "en": frozenset(
        "layer layers unit units ground soil soils subsurface rock rocks bedrock basement "
        "water waters aquifer aquifers groundwater resistivity resistivities resistive "
        "resistant conductive conductor conductors conductivity saturated wet dry moist "
        "anomaly anomalies boundary boundaries interface deposit "
        "deposits sediment sediments sedimentary depth thickness clayey sandy weathered "
        "fractured porous lens cavity void landfill waste leachate karst "
        "piezometer piezometric borehole wells palaeochannel paleochannel colluvium".split()
    ),
}
#: Words that make a sentence about the model, the form or the report instead of the ground.
ABOUT_TEXT_WORDS: dict[str, frozenset[str]] = {
    "fr": frozenset("modèle modèles auteur rapport utilisateur utilisateurs assistant".split()),
    "en": frozenset("model models author report user users assistant".split()),
}

_LABEL = re.compile(r"\b[UA]\d+\b")


def _other(language: str) -> str:
    return "en" if check_language(language) == "fr" else "fr"


def _tokens(sentence: str, language: str) -> list[str]:
    """The sentence's words of three letters or more (numbers, labels, symbols left out)."""
    from wordfreq.tokens import tokenize

    return [w for w in tokenize(sentence, language) if len(w) >= 3 and w.replace("-", "").isalpha()]


@functools.cache
def _vocabulary(language: str) -> frozenset[str]:
    """The package's own words in ``language``: its strings, materials and ground words."""
    from wordfreq.tokens import tokenize

    materials = MATERIALS_FR.values() if language == "fr" else MATERIALS_FR.keys()
    words: set[str] = set(GROUND_WORDS[language])
    for chunk in (*TEXTS[language].values(), *materials):
        words.update(tokenize(chunk, language))
    return frozenset(words)


@functools.cache
def _material_words(language: str) -> frozenset[str]:
    from wordfreq.tokens import tokenize

    materials = MATERIALS_FR.values() if language == "fr" else MATERIALS_FR.keys()
    # the names' own words, not the common ones any sentence may hold ("plus", "zone")
    names = {w for m in materials for w in tokenize(m, language) if len(w) >= 4}
    return frozenset(w for w in names if _zipf(w, language) < 4.5) | GROUND_WORDS[language]


def _zipf(word: str, language: str) -> float:
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, language))


@dataclass(frozen=True)
class Fluency:
    """The verdict on one sentence.

    Attributes:
        fluent: At least :data:`MIN_WORDS` words, none unknown, at most
            :data:`MAX_FOREIGN_SHARE` of them foreign.
        words: How many words of three letters or more the sentence has.
        unknown: Its words rarer than :data:`MIN_ZIPF` in the language and not in the
            package's vocabulary.
        foreign: Its words much more frequent in the other language.
    """

    fluent: bool
    words: int
    unknown: tuple[str, ...]
    foreign: tuple[str, ...]

    @property
    def bad(self) -> tuple[str, ...]:
        """The unknown and foreign words, in the sentence's order (each once)."""
        return tuple(dict.fromkeys((*self.unknown, *self.foreign)))


def check_fluency(sentence: str, language: str) -> Fluency:
    """Judge whether ``sentence`` is fluent ``language`` (``"fr"`` or ``"en"``).

    Raises:
        ValueError: ``language`` is neither ``"fr"`` nor ``"en"``.
    """
    other = _other(language)
    words = _tokens(sentence, language)
    own = _vocabulary(language)
    terms = _material_words(language)
    unknown: list[str] = []
    foreign: list[str] = []
    for w in words:
        here, there = _zipf(w, language), _zipf(w, other)
        if there - here >= FOREIGN_MARGIN and w not in terms:
            foreign.append(w)
        elif here < MIN_ZIPF and w not in own:
            unknown.append(w)
    few_foreign = len(foreign) <= MAX_FOREIGN_SHARE * len(words)
    fluent = len(words) >= MIN_WORDS and not unknown and few_foreign
    return Fluency(fluent, len(words), tuple(unknown), tuple(foreign))


def sentence_language(sentence: str) -> str | None:
    """``"fr"`` or ``"en"`` when the sentence's words clearly lean to one language, else
    ``None`` (too few words, or words both languages share: names, figures, "section").

    A word votes for a language when it is at least :data:`FOREIGN_MARGIN` Zipf units more
    frequent there; the sentence needs two votes more for one language than the other.
    """
    votes = {"fr": 0, "en": 0}
    for w in _tokens(sentence, "fr"):
        fr, en = _zipf(w, "fr"), _zipf(w, "en")
        if fr - en >= FOREIGN_MARGIN:
            votes["fr"] += 1
        elif en - fr >= FOREIGN_MARGIN:
            votes["en"] += 1
    if abs(votes["fr"] - votes["en"]) < 2:
        return None
    return "fr" if votes["fr"] > votes["en"] else "en"


def speaks_of_ground(sentence: str, language: str) -> bool:
    """Whether ``sentence`` states something about the ground (a label, a material or a
    ground word) and nothing about the model, the form or the report."""
    words = {w.lower() for w in _tokens(sentence, check_language(language))}
    if words & ABOUT_TEXT_WORDS[language]:
        return False
    return bool(_LABEL.search(sentence) or words & _material_words(language))
