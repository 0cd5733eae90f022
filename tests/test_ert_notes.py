"""Site notes that reach the interpretation: read safely, retrieved per unit, quoted with
their source, and never a way for an untraced figure into the report.

The notes under ``tests/data/notes`` are a French borehole log (sand and gravel, clay,
then porous limestone down to 12 m), an English earlier report (chalk at 120 ohm.m) and
an English logistics note (300 m, 45 m) that has nothing to say about the ground.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM

from langchain_setraf.embeddings import GGUFEmbeddings, TransformersEmbeddings
from langchain_setraf.ert import interpretation_chain, load_survey, summarize
from langchain_setraf.ert.checks import useful_text
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.interpretation import spec_of
from langchain_setraf.ert.notes import (
    NoteFile,
    NotePassage,
    NotesError,
    NotesIndex,
    default_notes_embeddings,
    notes_context,
    notes_embeddings,
    read_notes,
    retrieve_for_summary,
    split_notes,
    store_uploaded_notes,
    unit_queries,
)
from langchain_setraf.ert.report import collect_versions, html_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "two_layer_wenner.dat"
NOTES = Path(__file__).resolve().parent / "data" / "notes"

#: A sentence whose depth only the borehole log states (the survey stops at 9.34 m).
FROM_LOG = "Le calcaire poreux descend au moins jusqu'à 12 m de profondeur."
#: A sentence whose depth only the logistics note states (never retrieved, never quoted).
FROM_LOGISTICS = "Le calcaire poreux repose sur un substratum sain vers 45 m de profondeur."


@pytest.fixture(scope="module")
def summary() -> Any:
    return summarize(load_survey(EXAMPLE), language="fr")


@pytest.fixture(scope="module")
def retrieved(minilm_dir: Path, summary: Any) -> list[NotePassage]:
    files, skipped = read_notes(NOTES)
    assert skipped == []
    index = NotesIndex(split_notes(files), TransformersEmbeddings(model=str(minilm_dir)))
    return retrieve_for_summary(summary, index)


# -- reading and splitting --------------------------------------------------------------------
def test_passages_keep_their_file_and_line_range() -> None:
    files, _ = read_notes(NOTES)
    passages = split_notes(files)
    where = {(p.source, p.first_line, p.last_line): p.text for p in passages}
    assert where[("forage_F1.txt", 7, 7)].startswith("De 6 à 12 m : calcaire poreux")
    assert where[("forage_F1.txt", 5, 5)] == "Argile grise plastique de 4 à 6 m."
    # a lone Markdown heading stays with the paragraph under it
    assert where[("earlier_report.md", 1, 4)].startswith("# Earlier survey (2019)\n\nChalk")
    assert where[("logistics.md", 1, 4)].startswith("# Logistics")
    # a paragraph longer than a passage is split, each piece with its own lines
    long = "\n".join(
        f"Ligne {i} : argile sableuse humide, quelques graviers." for i in range(1, 31)
    )
    pieces = split_notes([NoteFile(source="long.txt", text="Titre\n\n" + long)], chunk_size=200)
    assert len(pieces) > 3 and pieces[0].first_line == 1 and pieces[1].first_line == 3
    for p in pieces[1:]:
        first = int(p.text.split()[1])  # "Ligne N : …" sits on line N + 2
        assert (p.first_line, p.last_line) == (first + 2, first + 2 + p.text.count("\n"))
        assert len(p.text) <= 200


def test_a_pdf_note_is_read_page_by_page(tmp_path: Path) -> None:
    (tmp_path / "log.pdf").write_bytes(_pdf(["Argile de 0 a 6 m", "Calcaire au-dela de 6 m"]))
    files, _ = read_notes(tmp_path)
    assert [(f.source, f.page) for f in files] == [("log.pdf", 1), ("log.pdf", 2)]
    assert "Argile de 0 a 6 m" in files[0].text and "Calcaire" in files[1].text
    p = split_notes(files)[1]
    assert p.where("fr") == "log.pdf, p. 2, l. 1" and p.where("en") == "log.pdf, p. 2, l. 1"


def test_a_hostile_notes_folder_is_refused_with_the_file_named(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("password: hunter2\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ok.md").write_text("Argile de 0 à 6 m, calcaire au-delà.\n")

    def refused(name: str, make: Any, *expected: str) -> None:
        target = notes / name
        make(target)
        with pytest.raises(NotesError) as err:
            read_notes(notes, max_file_bytes=1024 * 1024)
        assert name in str(err.value)
        for word in expected:
            assert word in str(err.value)
        if target.is_symlink() or target.is_file():
            target.unlink()
        else:
            target.rmdir()

    refused("leak.txt", lambda p: p.symlink_to(outside), "symlink", "outside the notes folder")
    refused("up", lambda p: p.symlink_to(tmp_path, target_is_directory=True), "outside")
    refused("loop.txt", lambda p: p.symlink_to(p), "cannot be resolved")
    refused("gone.md", lambda p: p.symlink_to(tmp_path / "deleted.md"), "cannot be resolved")
    refused("huge.txt", lambda p: _sparse(p, 1024 * 1024 + 1), "1048577 bytes")
    refused("core.md", lambda p: p.write_bytes(b"ELF\x7f\x00\x01\x02"), "binary", "offset 4")
    refused("latin1.txt", lambda p: p.write_bytes("argile à 6 m".encode("latin-1")), "UTF-8")
    refused("broken.pdf", lambda p: p.write_bytes(b"%PDF-1.4\nnot a pdf"), "not a readable PDF")
    # what stays inside is read; other kinds of files are named as not read
    (notes / "same.txt").symlink_to(notes / "ok.md")
    (notes / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    files, skipped = read_notes(notes)
    assert [f.source for f in files] == ["ok.md", "same.txt"] and skipped == ["photo.jpg"]
    with pytest.raises(NotesError, match=re.escape("no .txt, .md, .pdf file")):
        read_notes(_empty(tmp_path))
    with pytest.raises(NotesError, match=re.escape("same.txt: the folder's notes pass 40 bytes")):
        read_notes(notes, max_total_bytes=40)
    with pytest.raises(NotesError, match="not a folder"):
        read_notes(outside)
    assert outside.read_text() == "password: hunter2\n"


# -- retrieval ---------------------------------------------------------------------------------
def test_each_unit_retrieves_its_own_passage_and_never_the_logistics(
    minilm_dir: Path, summary: Any, retrieved: list[NotePassage]
) -> None:
    queries = unit_queries(summary)
    assert queries["U3"].startswith("7.27–9.34 m: porous limestone") and "calcaire" in queries["U3"]
    files, _ = read_notes(NOTES)
    index = NotesIndex(split_notes(files), TransformersEmbeddings(model=str(minilm_dir)))
    top = {name: index.search(q, k=1, threshold=0.0)[0][0] for name, q in queries.items()}
    # the limestone unit finds the log's limestone line, the upper unit the chalk report
    assert (top["U3"].source, top["U3"].first_line) == ("forage_F1.txt", 7)
    assert top["U1"].source == "earlier_report.md"
    assert all(p.source != "logistics.md" for p in retrieved)
    used = {(p.source, p.first_line): p.units for p in retrieved}
    assert "U3" in used[("forage_F1.txt", 7)]
    assert all(p.score >= 0.3 for p in retrieved)
    context = notes_context(retrieved, "fr")
    assert "[forage_F1.txt, l. 7]\nDe 6 à 12 m : calcaire poreux" in context


# -- figures: the survey or a quoted passage, nothing else -------------------------------------
def test_a_figure_is_traced_only_to_a_quoted_passage(summary: Any) -> None:
    files, _ = read_notes(NOTES)
    passages = {(p.source, p.first_line): p.text for p in split_notes(files)}
    log, logistics = passages[("forage_F1.txt", 7)], passages[("logistics.md", 1)]
    assert check_numbers(FROM_LOG, summary, "fr")  # 12 m: deeper than the survey sees
    assert check_numbers(FROM_LOG, summary, "fr", [log]) == []
    assert check_numbers(FROM_LOGISTICS, summary, "fr", [log])
    # the logistics note would trace 45 m: only quoting it could let the figure through
    assert check_numbers(FROM_LOGISTICS, summary, "fr", [logistics]) == []
    kept, warnings = useful_text(f"{FROM_LOG} {FROM_LOGISTICS}", summary, "fr", "", None, [log])
    assert kept == FROM_LOG
    assert any("45" in w and "substratum" in w for w in warnings), warnings


def test_a_figure_only_in_notes_that_were_not_quoted_is_refused(
    summary: Any, retrieved: list[NotePassage], tmp_path: Path
) -> None:
    spec = spec_of(summary)
    answer: dict[str, Any] = {
        u.name: {"material": u.candidates[0], "alternative": u.candidates[-1],
                 "confidence": "medium", "reason": "x"}
        for u in spec.units
    }  # fmt: skip
    answer["summary"] = f"{FROM_LOG} {FROM_LOGISTICS}"
    llm = FakeListLLM(responses=[json.dumps(answer, ensure_ascii=False)])
    result = interpretation_chain(llm, "fr").invoke({"survey": summary, "notes": retrieved})
    assert result.notes_used == retrieved
    assert FROM_LOG in result.model_notes  # 12 m: stated by the quoted borehole log
    assert "45 m" not in result.model_notes + result.geology  # only in the unquoted note
    assert any("45" in w for w in result.warnings)
    # the same answer without the notes: 12 m has nothing to be traced to either
    bare = interpretation_chain(FakeListLLM(responses=[json.dumps(answer)]), "fr").invoke(
        {"survey": summary}
    )
    assert "12 m" not in bare.model_notes and bare.notes_used == []
    # the report quotes each passage used with its source, and nothing else of the notes
    page = html_report(result, summary.survey, summary, versions=collect_versions(EXAMPLE),
                       figures=False)  # fmt: skip
    assert "<h2>Notes utilisées</h2>" in page
    assert "forage_F1.txt, l. 7" in page and "De 6 à 12 m : calcaire poreux" in page
    assert "logistics.md" not in page and "300 m" not in page
    # a passage is the user's text: shown as written, never as markup
    hostile = NotePassage(source="<b>x</b>.md", first_line=1, last_line=1,
                          text="<script>alert(1)</script>", units=["U1"])  # fmt: skip
    page = html_report(result.model_copy(update={"notes_used": [hostile]}), summary.survey,
                       summary, versions=collect_versions(EXAMPLE), figures=False)  # fmt: skip
    assert "<script" not in page.lower() and "<b>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;.md" in page


# -- the command line --------------------------------------------------------------------------
def test_cli_notes_reach_the_report_and_a_bad_folder_is_refused_first(
    minilm_gguf: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import langchain_setraf.ert.cli as ert_cli
    from langchain_setraf.cli import main

    seen: list[Any] = []

    class Recording(FakeListLLM):
        def _call(self, prompt: str, *args: Any, **kwargs: Any) -> str:
            seen.append(prompt)
            return super()._call(prompt, *args, **kwargs)

    def fake_llm(uri: str, given: Any, defaults: Any) -> Any:  # isolates the CLI's wiring
        spec = spec_of(summarize(load_survey(EXAMPLE)))
        return Recording(responses=[json.dumps({u.name: {"material": u.candidates[0]}
                                                for u in spec.units})])  # fmt: skip

    monkeypatch.setattr(ert_cli, "build_llm", fake_llm)
    out = tmp_path / "r.html"
    argv = ["interpret", str(EXAMPLE), "--notes", str(NOTES), "--report", str(out)]
    assert main([*argv, "--embeddings-model", str(minilm_gguf)]) == 0
    captured = capsys.readouterr()
    assert "notes : forage_F1.txt, l. 7" in captured.err  # the CLI speaks the report's language
    assert "## Notes utilisées" in captured.out and "> — forage_F1.txt, l. 7" in captured.out
    assert "De 6 à 12 m : calcaire poreux" in seen[0]  # the model read the passage as data
    assert "Logistics" not in seen[0] and "logistics.md" not in captured.out
    page = out.read_text(encoding="utf-8")
    assert "Notes utilisées" in page and "forage_F1.txt, l. 7" in page
    # a hostile folder is refused, by name, before the survey is read
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dump.txt").write_bytes(b"\x00\x01")
    assert main([*argv[:3], str(bad), "--embeddings-model", str(minilm_gguf)]) == 2
    err = capsys.readouterr().err
    assert "setraf: error: notes file dump.txt: binary data" in err and "reading" not in err
    assert main([*argv[:4], "--embeddings-model", str(tmp_path / "no.gguf")]) == 2
    assert "embeddings model" in capsys.readouterr().err


def test_the_notes_embeddings_leave_openmp_passive_unless_the_user_chose(
    minilm_dir: Path, minilm_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch loaded first with OpenMP's spinning default made SmolLM2's decoding 456 s
    # instead of 14 s on this 2-core machine (docs/interpretation.md)
    monkeypatch.setenv("OMP_WAIT_POLICY", "x")  # recorded, so the test leaves it as it was
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert isinstance(notes_embeddings(str(minilm_dir)), TransformersEmbeddings)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert isinstance(notes_embeddings(str(minilm_gguf)), GGUFEmbeddings)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    with pytest.raises(
        NotesError, match=re.escape("expected a .gguf file or a sentence-transformers")
    ):
        notes_embeddings(str(NOTES / "forage_F1.txt"))


def test_the_default_embeddings_come_from_the_installed_package(tmp_path: Path) -> None:
    emb = default_notes_embeddings(tmp_path)
    assert isinstance(emb, TransformersEmbeddings)
    folder = Path(emb.model)
    assert folder.parent == tmp_path and (folder / "model.safetensors").is_file()
    assert default_notes_embeddings(tmp_path).model == emb.model  # extracted once
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # nothing left over


# -- uploads (the app) --------------------------------------------------------------------------
def test_uploaded_notes_are_stored_under_safe_names_only(tmp_path: Path) -> None:
    outside = tmp_path / "victim.txt"
    folder = tmp_path / "up"
    folder.mkdir()
    uploads = [
        ("../victim.txt", b"Argile de 0 a 6 m."),
        ("/etc/passwd", b"root"),
        ("C:\\logs\\F1.md", b"Calcaire."),
        ("F1.md", b"Encore du calcaire."),
        ("..", b"x"),
        (".bashrc", b"y"),
    ]
    assert store_uploaded_notes(uploads, folder) == folder
    assert not outside.exists()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["F1 (2).md", "F1.md", "notes.bashrc", "notes.txt", "passwd", "victim.txt"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.iterdir())
    assert (folder / "F1 (2).md").read_bytes() == b"Encore du calcaire."
    files, skipped = read_notes(folder)  # what the app then reads
    assert [f.source for f in files] == ["F1 (2).md", "F1.md", "notes.txt", "victim.txt"]
    assert skipped == ["notes.bashrc", "passwd"]
    with pytest.raises(NotesError, match=re.escape("notes file big.md: 11 bytes, more than")):
        store_uploaded_notes([("ok.md", b"x"), ("big.md", b"x" * 11)], tmp_path / "up2",
                             max_file_bytes=10)  # fmt: skip
    assert not (tmp_path / "up2").exists()  # refused before anything is written


@pytest.mark.slow
def test_the_app_gives_uploaded_notes_to_the_model_and_refuses_a_binary_one(
    minilm_gguf: Path, ert_dir: Path, cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SETRAF_ERT_DIR", str(ert_dir))
    monkeypatch.setenv("SETRAF_NOTES_EMBEDDINGS", str(minilm_gguf))
    app = AppTest.from_file(str(ROOT / "examples" / "streamlit_app.py"), default_timeout=900)
    app.run()
    app.selectbox(key="sample").set_value("two_layer_wenner.dat").run()
    notes = [(p.name, p.read_bytes(), "text/plain") for p in sorted(NOTES.iterdir())]
    app.file_uploader(key="notes").set_value(notes).run()
    app.button(key="interpret").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    result = app.session_state["interpretation_result"]
    assert ("forage_F1.txt", 7) in {(p.source, p.first_line) for p in result.notes_used}
    assert all(p.source != "logistics.md" for p in result.notes_used)
    assert "Notes utilisées" in app.session_state["report_html"]
    assert any("forage_F1.txt, l. 7" in m.value for m in app.markdown)
    # a binary file among the notes: an error that names it, and nothing interpreted
    app.file_uploader(key="notes").upload("dump.txt", b"\x00\x01", "text/plain").run()
    app.button(key="interpret").click().run()
    assert any("dump.txt" in e.value and "binary" in e.value for e in app.error)
    assert app.session_state["notes_passages"] is None


# -- helpers -----------------------------------------------------------------------------------
def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        fh.truncate(size)
    with path.open("r+b") as fh:
        fh.write(b"text")


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "only.csv").write_text("a,b\n")
    return folder


def _pdf(pages: list[str]) -> bytes:
    """A minimal, valid PDF with one line of Helvetica text per page."""
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>",
    ]
    font = 3 + 2 * n
    for i, line in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({line}) Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out
