"""The pseudo-section and the inverted section, drawn side by side on one log colour scale.

Used by the Streamlit app and by the HTML report (:mod:`langchain_setraf.ert.report`).
Needs matplotlib (the ``app`` extra); the labels come from
:mod:`langchain_setraf.ert.i18n`. The model below the depth of investigation is greyed
out and the depth of investigation drawn as a dashed line.

Example:
    >>> from langchain_setraf.ert import load_survey
    >>> png = section_png(load_survey("examples/two_layer_wenner.dat"), None, "fr")
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from typing import Any

from langchain_setraf.ert.i18n import check_language
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.model_section import ModelSection
from langchain_setraf.ert.survey import Survey

__all__ = ["COLORMAP", "close_figure", "require_matplotlib", "section_figure", "section_png"]

#: Perceptually uniform, readable in greyscale and by colour-blind readers.
COLORMAP = "viridis"


def require_matplotlib() -> None:
    """Check that the sections can be drawn.

    Raises:
        ImportError: matplotlib is not installed (the message names the extra).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the app and bench extras have it
        raise ImportError(
            "drawing the sections needs matplotlib: pip install 'langchain-setraf[app]'"
        ) from exc


def _pyplot() -> Any:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def section_figure(survey: Survey, section: ModelSection | None, language: str) -> Any:
    """The pseudo-section (or the file's own section), and the inverted section beside it on
    the same log colour scale, with the depth of investigation marked (a matplotlib figure:
    close it with :func:`close_figure`).

    Raises:
        ValueError: ``language`` is neither ``"fr"`` nor ``"en"``.
        ImportError: matplotlib is not installed (the message names the extra).
    """
    check_language(language)

    def t(key: str) -> str:
        return tr(language, f"figure.{key}")

    plt = _pyplot()
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    cells = survey.cells
    values = [c.rho for c in cells if c.rho > 0] + (list(section.rho) if section else [])
    norm = LogNorm(vmin=min(values), vmax=max(values)) if values else None
    n = 2 if section is not None else 1
    fig, axes = plt.subplots(1, n, figsize=(12.4, 3.8), squeeze=False)
    ax = axes[0][0]
    mappable: Any = None
    shown = [c for c in cells if c.rho > 0]
    if shown:
        mappable = ax.scatter(
            [c.x for c in shown],
            [c.depth for c in shown],
            c=[c.rho for c in shown],
            cmap=COLORMAP,
            norm=norm,
            s=30,
            marker="s",
        )
    pseudo = survey.depth_kind != "model"
    ax.set_title(t("pseudo") if pseudo else t("file_model"), fontsize=10)
    ax.set_ylabel(t("pseudo_depth") if pseudo else t("depth"))
    if section is not None:
        ax2 = axes[0][1]
        rects = [
            Rectangle((x - w / 2, d - h / 2), w, h)
            for x, d, w, h in zip(
                section.x, section.depth, section.width, section.height, strict=True
            )
        ]
        coll = PatchCollection(rects, cmap=COLORMAP, norm=norm, linewidths=0)
        coll.set_array(list(section.rho))
        ax2.add_collection(coll)
        x_lo = min(x - w / 2 for x, w in zip(section.x, section.width, strict=True))
        x_hi = max(x + w / 2 for x, w in zip(section.x, section.width, strict=True))
        z_hi = max(d + h / 2 for d, h in zip(section.depth, section.height, strict=True))
        ax2.set_xlim(x_lo, x_hi)
        ax2.set_ylim(0, z_hi)
        if section.doi_m < z_hi:  # the model below the depth of investigation is greyed out
            ax2.axhspan(section.doi_m, z_hi, color="white", alpha=0.6, lw=0)
            ax2.axhline(section.doi_m, color="black", ls="--", lw=1)
            doi = f"{section.doi_m:.3g}"
            doi = doi.replace(".", ",") if language == "fr" else doi
            ax2.text(
                x_lo + 0.01 * (x_hi - x_lo), section.doi_m, f"{t('doi')} ≈ {doi} m",
                va="top", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
            )  # fmt: skip
        ax2.set_title(t("model_section"), fontsize=10)
        ax2.set_ylabel(t("depth"))
        mappable = mappable or coll
    for a in axes[0]:
        a.set_xlabel(t("x"))
        if not a.yaxis_inverted():
            a.invert_yaxis()
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes[0]), label=t("rho"), fraction=0.04, pad=0.02)
    return fig


def close_figure(fig: Any) -> None:
    """Free a figure made by :func:`section_figure`."""
    _pyplot().close(fig)


def section_png(
    survey: Survey, section: ModelSection | None, language: str, dpi: int = 110
) -> bytes:
    """:func:`section_figure` as PNG bytes (the figure is closed)."""
    fig = section_figure(survey, section, language)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return buf.getvalue()
    finally:
        close_figure(fig)
