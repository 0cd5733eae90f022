"""The report as a PDF: the same blocks as the HTML report, laid out on A4 by fpdf2.

:func:`pdf_report` writes what :func:`~langchain_setraf.ert.report.html_report` writes,
from the same :class:`~langchain_setraf.ert.report.ReportDocument`, so both hold the same
words. fpdf2 is pure Python (the ``app`` extra); the text is set in DejaVu Sans, the font
matplotlib ships, so French accents, ``Ω·m`` and ``χ²`` print without a system font.
Text from outside the package (file names, model text) is written as text: fpdf2 reads
no markup from it.

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> from langchain_setraf.ert.chains import Interpretation
    >>> survey = load_survey("examples/two_layer_wenner.dat")
    >>> pdf = pdf_report(Interpretation(language="fr"), survey, summarize(survey),
    ...                  figures=False)
    >>> pdf[:5]
    b'%PDF-'
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_setraf.ert.chains import Interpretation
from langchain_setraf.ert.report import (
    Block,
    Figure,
    Heading,
    Items,
    Paragraph,
    Quote,
    ReportDocument,
    Table,
    Versions,
    report_document,
)
from langchain_setraf.ert.summary import SurveySummary
from langchain_setraf.ert.survey import Survey

__all__ = ["pdf_report", "render_pdf", "require_fpdf"]

_FONT = "DejaVu"
#: Font sizes (pt) of headings by level, of body text and of tables.
_HEADING_PT = {1: 16.0, 2: 13.0, 3: 11.0}
_BODY_PT = 10.0
_TABLE_PT = 8.0


def require_fpdf() -> None:
    """Check that a PDF can be written.

    Raises:
        ImportError: fpdf2 or matplotlib (its font) is not installed (the message names
            the extra).
    """
    try:
        import fpdf  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "a PDF report needs fpdf2 and matplotlib: pip install 'langchain-setraf[app]'"
        ) from exc


def _fonts() -> dict[str, Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {
        "": folder / "DejaVuSans.ttf",
        "B": folder / "DejaVuSans-Bold.ttf",
        "I": folder / "DejaVuSans-Oblique.ttf",
    }


def _table(pdf: Any, block: Table) -> None:
    from fpdf.enums import Align
    from fpdf.fonts import FontFace

    pdf.set_font(_FONT, "", _TABLE_PT)
    bold = FontFace(emphasis="BOLD", fill_color=(240, 240, 240))
    width = len(block.header) if block.header is not None else len(block.rows[0])
    with pdf.table(
        first_row_as_headings=block.header is not None,
        headings_style=bold,
        line_height=1.3 * _TABLE_PT * 0.3528,
        padding=1,
        col_widths=None if block.header is not None or width != 2 else (2, 3),
    ) as table:
        if block.header is not None:
            row = table.row()
            for text in block.header:
                row.cell(text)
        for values in block.rows:
            row = table.row()
            for i, text in enumerate(values):
                align = Align.R if i in block.numeric else Align.L
                style = bold if block.header is None and i == 0 else None
                row.cell(text, align=align, style=style)
    pdf.ln(2)


def _block(pdf: Any, block: Block) -> None:
    if isinstance(block, Heading):
        pdf.ln(3 if block.level > 1 else 0)
        pdf.set_font(_FONT, "B", _HEADING_PT.get(block.level, _BODY_PT))
        pdf.multi_cell(0, None, block.text, new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.ln(1)
    elif isinstance(block, Paragraph):
        pdf.set_font(_FONT, "I" if block.muted else "", _BODY_PT - (1 if block.muted else 0))
        pdf.multi_cell(0, None, block.text, new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.ln(1)
    elif isinstance(block, Items):
        pdf.set_font(_FONT, "", _BODY_PT)
        for value in block.values:
            pdf.set_x(pdf.l_margin + 2)
            pdf.cell(4, None, "•")
            pdf.multi_cell(pdf.epw - 6, None, value, new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.ln(1)
    elif isinstance(block, Table):
        _table(pdf, block)
    elif isinstance(block, Figure):
        pdf.image(io.BytesIO(block.png), w=pdf.epw, alt_text=block.alt)
        pdf.ln(1)
    elif isinstance(block, Quote):
        pdf.set_font(_FONT, "I", _BODY_PT - 1)
        pdf.set_x(pdf.l_margin + 6)
        pdf.multi_cell(pdf.epw - 6, None, block.text, new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.set_font(_FONT, "", _BODY_PT - 2)
        pdf.set_x(pdf.l_margin + 6)
        pdf.multi_cell(
            pdf.epw - 6, None, f"— {block.source}", new_x="LMARGIN", new_y="NEXT", align="L"
        )
        pdf.ln(1)


def render_pdf(document: ReportDocument) -> bytes:
    """``document`` as the bytes of an A4 PDF (title, language and creator set).

    Raises:
        ImportError: fpdf2 or matplotlib is not installed (the message names the extra).
    """
    require_fpdf()
    import fpdf

    pdf = fpdf.FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(document.title)
    pdf.set_lang(document.language)
    pdf.set_creator("langchain-setraf")
    for style, path in _fonts().items():
        pdf.add_font(_FONT, style, str(path))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    for block in document.blocks:
        _block(pdf, block)
    return bytes(pdf.output())


def pdf_report(
    result: Interpretation,
    survey: Survey,
    summary: SurveySummary,
    *,
    versions: Versions | None = None,
    figures: bool = True,
    unresolved: Sequence[str] = (),
) -> bytes:
    """The report as the bytes of a PDF, in ``result.language``: the same content as
    :func:`~langchain_setraf.ert.report.html_report` (arguments as there).

    Raises:
        ValueError: ``result.language`` is neither ``"fr"`` nor ``"en"``.
        ImportError: fpdf2 or matplotlib is not installed (the message names the extra).
    """
    require_fpdf()
    document = report_document(
        result, survey, summary, versions=versions, figures=figures, unresolved=unresolved
    )
    return render_pdf(document)
