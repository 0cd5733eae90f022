"""The form a model fills for one survey: its closed lists, its pydantic model, its schema.

A small model cannot be trusted with numbers or free prose, but it can always fill a form
whose every field is a closed choice. For each unit the summary found, the model chooses
its material from that unit's own candidate list (an enum built per survey), an
alternative from the same list, a confidence and one short reason; for the survey, whether
a water table is supported and at which boundary, a cause for each lateral anomaly, and a
short summary. :func:`spec_of` lists what to fill, :func:`schema_model` builds the form as
a pydantic model and :func:`json_schema` its self-contained JSON schema (which constrains
local decoders).

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> spec = spec_of(summarize(load_survey("examples/two_layer_wenner.dat")))
    >>> [u.name for u in spec.units], json_schema(spec)["required"][-1]
    (['U1', 'U2', 'U3'], 'summary')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, create_model

from langchain_setraf.ert.i18n import UNKNOWN_MATERIAL
from langchain_setraf.ert.summary import SurveySummary

__all__ = [
    "ANOMALY_CAUSES",
    "CONFIDENCE",
    "EXPLANATION_MAX",
    "NONE",
    "REASON_MAX",
    "SUMMARY_MAX",
    "UNKNOWN_MATERIAL",
    "AnomalySpec",
    "Confidence",
    "InterpretationSpec",
    "UnitSpec",
    "json_schema",
    "material_class",
    "n_fields",
    "schema_model",
    "spec_of",
    "token_budget",
]


Confidence = Literal["low", "medium", "high"]
CONFIDENCE: tuple[str, ...] = ("low", "medium", "high")
NONE = "none"
REASON_MAX = 90
EXPLANATION_MAX = 90
SUMMARY_MAX = 200

#: Closed lists of causes for lateral anomalies, by kind.
ANOMALY_CAUSES: dict[str, tuple[str, ...]] = {
    "conductive": (
        "clay lens",
        "wetter or water-saturated zone",
        "saline water or leachate",
        "metallic object (pipe, cable)",
        "measurement artefact",
    ),
    "resistive": (
        "void or cavity",
        "dry sand or gravel lens",
        "bedrock high or boulders",
        "buried masonry or rubble",
        "measurement artefact",
    ),
}

#: Coarse classes used to score a material choice against a truth case.
_CLASSES = {
    "water": ("sea water", "brackish", "leachate"),
    "metal": ("metallic",),
    "fine": ("clay", "marl", "silt", "till", "landfill"),
    "coarse": ("alluvium", "sand and gravel", "dry sand", "dry gravel"),
    "rock": (
        "granite",
        "chalk",
        "shale",
        "sandstone",
        "limestone",
        "dolomite",
        "laterite",
        "basalt",
        "conglomerate",
        "permafrost",
    ),
}


def material_class(material: str) -> str:
    """Coarse class of a reference material: water, metal, fine, coarse, rock or unknown."""
    low = material.lower()
    for cls in ("water", "metal", "fine", "coarse", "rock"):  # order: "sand" before "clay"?
        if any(key in low for key in _CLASSES[cls]):
            return cls
    return "unknown"


@dataclass(frozen=True)
class UnitSpec:
    """A unit the model must describe and its own candidate materials."""

    name: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class AnomalySpec:
    """A lateral anomaly the model must explain, with its closed list of causes."""

    name: str
    kind: str

    @property
    def causes(self) -> tuple[str, ...]:
        """The causes the model may choose for this kind of anomaly."""
        return ANOMALY_CAUSES.get(self.kind, ANOMALY_CAUSES["conductive"])


@dataclass(frozen=True)
class InterpretationSpec:
    """What the model fills for one survey: units, boundaries (labels) and anomalies."""

    units: tuple[UnitSpec, ...]
    boundaries: tuple[str, ...] = ()
    anomalies: tuple[AnomalySpec, ...] = ()


def spec_of(summary: SurveySummary) -> InterpretationSpec:
    """The form for one survey: one entry per unit, boundary and anomaly of its summary."""
    units = tuple(
        UnitSpec(u.name, tuple(c.material for c in u.candidates) or (UNKNOWN_MATERIAL,))
        for u in summary.units
    )
    boundaries = tuple(
        f"{summary.units[i].name}/{summary.units[i + 1].name}"
        for i in range(len(summary.boundaries))
    )
    anomalies = tuple(AnomalySpec(f"A{i + 1}", a.kind) for i, a in enumerate(summary.anomalies))
    return InterpretationSpec(units, boundaries, anomalies)


_Enum = cast(Any, Literal)


def schema_model(spec: InterpretationSpec) -> type[BaseModel]:
    """The pydantic model of the form (a new class per survey: each unit has its own enum)."""
    fields: dict[str, Any] = {}
    for u in spec.units:
        mats = _Enum[u.candidates]
        unit = create_model(
            f"Unit{u.name}",
            material=(mats, Field(description=f"most likely material of {u.name}")),
            alternative=(mats, Field(description="another candidate that fits the data")),
            confidence=(Confidence, Field(description="low, medium or high")),
            reason=(
                str,
                Field(min_length=3, max_length=REASON_MAX, description="one short reason"),
            ),
        )
        fields[u.name] = (unit, ...)
    if spec.boundaries:
        water = create_model(
            "WaterTable",
            supported=(bool, Field(description="does resistivity drop at a plausible boundary")),
            boundary=(_Enum[(*spec.boundaries, NONE)], Field(description="where, or none")),
        )
        fields["water_table"] = (water, ...)
    for a in spec.anomalies:
        anomaly = create_model(
            f"Anomaly{a.name}",
            cause=(
                _Enum[a.causes],
                Field(description=f"most likely cause of the {a.kind} anomaly"),
            ),
            explanation=(str, Field(min_length=3, max_length=EXPLANATION_MAX)),
        )
        fields[a.name] = (anomaly, ...)
    fields["summary"] = (str, Field(min_length=10, max_length=SUMMARY_MAX))
    model: type[BaseModel] = create_model("ERTInterpretation", **fields)
    return model


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.split("/")[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def json_schema(spec: InterpretationSpec) -> dict[str, Any]:
    """The form's JSON schema, self-contained (no ``$ref``), every property required."""
    raw = schema_model(spec).model_json_schema()
    out: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    return out


def token_budget(spec: InterpretationSpec) -> int:
    """Generous token count for a complete answer (free text at its maximum length)."""
    per_unit = 40 + REASON_MAX // 2
    per_anomaly = 24 + EXPLANATION_MAX // 2
    water = 24 if spec.boundaries else 0
    return (
        48
        + len(spec.units) * per_unit
        + len(spec.anomalies) * per_anomaly
        + water
        + (SUMMARY_MAX // 2)
    )


def n_fields(spec: InterpretationSpec) -> int:
    """How many fields the form has (each unit 4, the water table 1, each anomaly 2, summary 1)."""
    return 4 * len(spec.units) + (1 if spec.boundaries else 0) + 2 * len(spec.anomalies) + 1
