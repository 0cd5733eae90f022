"""``setraf pull``: download a recommended GGUF model, verified, in one command.

A small catalogue (:data:`CATALOG`) names each model's Hub repository, file, pinned
revision, exact size, SHA-256, licence and an estimate of the memory it needs.
:func:`pull` downloads through :func:`huggingface_hub.hf_hub_download` (its progress bar,
its ``HF_ENDPOINT`` / ``HF_TOKEN`` / proxy settings, and its resume: a transfer cut
mid-way is retried with an HTTP ``Range`` request from where it stopped) into a fresh
private staging folder inside the destination (``mkdtemp``, mode 0700), then checks size,
SHA-256 and the GGUF header, and only then renames the file into place (``os.replace``:
atomic on one filesystem). The path a model is expected at never holds a partial or
unverified file, and the staging folder is the only thing a pull ever deletes.

Hostile catalogues are refused before anything on disk is touched (:func:`check_entry`):
names and files must be plain file names (no ``/``, ``\\``, ``..``, NUL or control
characters, no leading ``.``, not absolute), repositories ``owner/name``, and revisions
40-hex commit hashes (a branch or tag can move under a pinned SHA-256). Two pulls of one
model take turns on a lock file beside it (:mod:`langchain_setraf.pull_lock`): the second
waits (``lock_timeout``, default :data:`DEFAULT_LOCK_TIMEOUT`) and then finds the model
installed. A download that does not fit (checked before, and ``ENOSPC`` during it) leaves
nothing behind and raises :class:`DiskFullError` naming the folder and its free space.

The download needs the ``pull`` extra: ``pip install 'langchain-setraf[pull]'``.

Memory figures come from the package's own estimate,
:func:`~langchain_setraf.backends.gguf.estimate_gguf_bytes` (weights + f16 KV cache +
compute buffers, repacking off as :class:`~langchain_setraf.GGUFLLM` loads). For a file
not downloaded yet it runs on a header rebuilt from the catalogue: the architecture's
layer count, embedding width, (KV) head counts and vocabulary size, and the whole file
size standing in for the tensor bytes (the header's few MB of metadata make it a slight
over-estimate). Once the file is here the real header is used.

Example:
    .. code-block:: console

        $ setraf pull --list
        $ setraf pull mistral-7b-instruct-v0.2
        $ setraf interpret examples/two_layer_wenner.dat --model ~/.cache/setraf/models/...
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from langchain_setraf.backends.gguf.estimate import estimate_gguf_bytes
from langchain_setraf.backends.gguf.file import ArrayInfo, GGUFInfo, GGUFTensor, read_gguf_header
from langchain_setraf.memory import format_bytes
from langchain_setraf.pull_lock import model_lock
from langchain_setraf.settings import get_settings

__all__ = [
    "CATALOG",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_N_CTX",
    "STAGING_PREFIX",
    "Architecture",
    "CatalogEntry",
    "ChecksumMismatchError",
    "DiskFullError",
    "PullResult",
    "check_entry",
    "default_models_dir",
    "get_entry",
    "load_catalog",
    "pull",
    "sha256_file",
]

#: Context length the catalogue's memory figures are computed for (GGUFLLM's default).
DEFAULT_N_CTX = 2048
#: Seconds a pull waits for another pull of the same model before giving up.
DEFAULT_LOCK_TIMEOUT = 600.0
#: Prefix of the private staging folder a pull creates inside the models folder.
STAGING_PREFIX = ".setraf-pull-"
_HASH_CHUNK = 8 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_MAX_NAME_BYTES = 255
_EXTRA_HINT = "pip install 'langchain-setraf[pull]' (or pip install 'huggingface_hub>=0.25')"


class ChecksumMismatchError(ValueError):
    """A downloaded file's size or SHA-256 differs from the catalogue's."""


class DiskFullError(OSError):
    """The models folder has no room for the download (``errno`` is ``ENOSPC``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


@dataclass(frozen=True)
class Architecture:
    """The header values the memory estimate needs (from the model's GGUF metadata).

    Attributes:
        name: ``general.architecture`` (``"llama"``, ``"qwen2"``…).
        block_count: Number of transformer layers.
        embedding_length: Hidden width.
        head_count: Attention heads.
        head_count_kv: Key/value heads (grouped-query attention).
        vocab_size: Tokens in the vocabulary.
        feed_forward_length: Width of the feed-forward layers (0: not stated; the
            estimate then takes 4 × ``embedding_length``). Optional in a catalogue file.
    """

    name: str
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    vocab_size: int
    feed_forward_length: int = 0


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable model.

    Attributes:
        name: Short name given to ``setraf pull``.
        repo: Hub repository (``owner/name``).
        file: File name inside the repository.
        revision: The 40-hex commit the file is fetched at (branches and tags are
            refused: they can move).
        size: Exact size in bytes.
        sha256: SHA-256 of the file (the Hub's LFS ``oid``), lower-case hex.
        license: SPDX identifier of the weights' licence.
        quant: Quantisation (``"Q4_K_M"``…).
        description: One line for ``--list``.
        architecture: Header values for the memory estimate, ``None`` if unknown.
    """

    name: str
    repo: str
    file: str
    revision: str
    size: int
    sha256: str
    license: str
    quant: str
    description: str
    architecture: Architecture | None = None

    def min_memory_bytes(self, n_ctx: int = DEFAULT_N_CTX) -> int | None:
        """The package's memory estimate for this model with an ``n_ctx`` context.

        Returns ``None`` when the catalogue gives no architecture.
        """
        arch = self.architecture
        if arch is None:
            return None
        info = GGUFInfo(
            path=Path(self.file),
            version=3,
            file_size=self.size,
            metadata={
                "general.architecture": arch.name,
                f"{arch.name}.block_count": arch.block_count,
                f"{arch.name}.embedding_length": arch.embedding_length,
                f"{arch.name}.attention.head_count": arch.head_count,
                f"{arch.name}.attention.head_count_kv": arch.head_count_kv,
                "tokenizer.ggml.tokens": ArrayInfo("string", arch.vocab_size),
                **(
                    {f"{arch.name}.feed_forward_length": arch.feed_forward_length}
                    if arch.feed_forward_length
                    else {}
                ),
            },
            # the whole file stands in for the tensor data (an upper bound by the header size)
            tensors=[GGUFTensor("weights", (self.size,), "F32", 0, self.size)],
        )
        return estimate_gguf_bytes(info, n_ctx, repack=False)


#: The recommended models. Sizes and SHA-256 are the Hub's Git LFS pointers (``oid``,
#: ``size``) of these files at these revisions.
CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="qwen2.5-0.5b-instruct",
            repo="bartowski/Qwen2.5-0.5B-Instruct-GGUF",
            file="Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
            revision="21ef23001f314d0895bd8439b08157c2d4cd9bb7",
            size=397_808_192,
            sha256="6eb923e7d26e9cea28811e1a8e852009b21242fb157b26149d3b188f3a8c8653",
            license="Apache-2.0",
            quant="Q4_K_M",
            description="small multilingual (FR/EN) instruct model, a step up from SmolLM2",
            architecture=Architecture("qwen2", 24, 896, 14, 2, 151_936, 4864),
        ),
        CatalogEntry(
            name="mistral-7b-instruct-v0.2",
            repo="TheBloke/Mistral-7B-Instruct-v0.2-GGUF",
            file="mistral-7b-instruct-v0.2.Q4_K_M.gguf",
            revision="3a6fbf4a41a1d52e415a4958cde6856d34b2db93",
            size=4_368_439_584,
            sha256="3e0039fd0273fcbebb49228943b17831aadd55cbcbf56f0af00499be2040ccf9",
            license="Apache-2.0",
            quant="Q4_K_M",
            description="SETRAF's model (Mistral-7B-Instruct v0.2) in 4 bits instead of float32",
            architecture=Architecture("llama", 32, 4096, 32, 8, 32_000, 14336),
        ),
    )
}


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` did.

    Attributes:
        path: Where the verified model is.
        downloaded: ``False`` when a verified copy was already there.
        memory_bytes: The package's memory estimate from the file's real header.
    """

    path: Path
    downloaded: bool
    memory_bytes: int


def default_models_dir() -> Path:
    """``$SETRAF_MODELS_DIR``, else ``~/.cache/setraf/models``."""
    return get_settings().models_dir


def get_entry(name: str, catalog: Mapping[str, CatalogEntry] | None = None) -> CatalogEntry:
    """Look ``name`` up in ``catalog`` (default :data:`CATALOG`).

    Raises:
        LookupError: Unknown name; the message lists the known ones.
    """
    cat = CATALOG if catalog is None else catalog
    try:
        return cat[name]
    except KeyError:
        raise LookupError(
            f"unknown model {name!r}; available: {', '.join(sorted(cat))} (setraf pull --list)"
        ) from None


def _file_name_problem(value: str) -> str | None:
    """Why ``value`` is not a plain file name, or ``None`` if it is one."""
    if "\x00" in value:
        return "contains a NUL byte"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    if value.startswith("/") or PureWindowsPath(value).is_absolute() or value[1:2] == ":":
        return "is an absolute path"
    for bad in ("..", "/", "\\"):
        if bad in value:
            return f"contains {bad!r}"
    if value.startswith("."):
        return "starts with '.' (a hidden or relative path)"
    if value.strip() != value or not value:
        return "is empty or has leading/trailing blanks"
    if len(value.encode("utf-8")) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes"
    return None


def check_entry(entry: CatalogEntry, where: str | None = None) -> None:
    """Refuse an entry whose names could reach outside the models folder, or could move.

    :func:`pull` calls it before touching the disk, and :func:`load_catalog` for every
    entry of a catalogue file.

    Args:
        entry: The entry to check.
        where: How to name the entry in the error (default ``catalogue entry 'name'``).

    Raises:
        ValueError: ``name`` or ``file`` is not a plain file name (``/``, ``\\``, ``..``,
            NUL, control characters, leading ``.``, absolute), ``repo`` is not
            ``owner/name``, ``revision`` is not a 40-hex commit, ``sha256`` not 64 hex
            digits or ``size`` not positive. The message names the entry and the field.
    """
    at = where or f"catalogue entry {entry.name!r}"
    for key in ("name", "file"):
        value = getattr(entry, key)
        problem = _file_name_problem(value) if isinstance(value, str) else "is not a string"
        if problem is not None:
            raise ValueError(
                f"{at}: {key!r} {value!r} {problem}; it must be a plain file name "
                "(refused before anything was written or deleted)"
            )
    parts = entry.repo.split("/") if isinstance(entry.repo, str) else []
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(x) and ".." not in x for x in parts):
        raise ValueError(
            f"{at}: 'repo' {entry.repo!r} must be a Hub repository 'owner/name' (letters, "
            "digits, '.', '_', '-'; no '..')"
        )
    if not (isinstance(entry.revision, str) and _COMMIT.fullmatch(entry.revision)):
        raise ValueError(
            f"{at}: 'revision' {entry.revision!r} must be a 40-hex commit hash (lower case); "
            "branches and tags such as 'main' are refused because they can move"
        )
    if not (isinstance(entry.sha256, str) and _SHA256.fullmatch(entry.sha256)):
        raise ValueError(f"{at}: 'sha256' must be 64 lower-case hex digits")
    if isinstance(entry.size, bool) or not isinstance(entry.size, int) or entry.size <= 0:
        raise ValueError(f"{at}: 'size' must be a positive integer, got {entry.size!r}")


_FIELDS: dict[str, type] = {
    "name": str,
    "repo": str,
    "file": str,
    "revision": str,
    "size": int,
    "sha256": str,
    "license": str,
    "quant": str,
    "description": str,
}
_ARCH_FIELDS: dict[str, type] = {
    "name": str,
    "block_count": int,
    "embedding_length": int,
    "head_count": int,
    "head_count_kv": int,
    "vocab_size": int,
}


def _typed(where: str, data: Mapping[str, Any], fields: Mapping[str, type]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(fields) - {"architecture"})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; expected {sorted(fields)}")
    out: dict[str, Any] = {}
    for key, kind in fields.items():
        if key not in data:
            raise ValueError(f"{where}: missing field {key!r}")
        value = data[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{where}: {key!r} must be an integer, got {value!r}")
        if kind is str and not (isinstance(value, str) and value):
            raise ValueError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
        out[key] = value
    return out


def load_catalog(path: str | os.PathLike[str]) -> dict[str, CatalogEntry]:
    """Read a catalogue from a JSON file: ``{"models": [{name, repo, file, ...}, ...]}``.

    Each model has the fields of :class:`CatalogEntry`; ``architecture`` is optional (an
    object with the fields of :class:`Architecture`). A lab can list its own models, or a
    mirror's, this way.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not JSON, or an entry is malformed (names the entry and the field).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ValueError(f"{p}: expected an object with a 'models' list")
    catalog: dict[str, CatalogEntry] = {}
    for i, raw in enumerate(models):
        where = f"{p}: models[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
        fields = _typed(where, raw, _FIELDS)
        arch = None
        if raw.get("architecture") is not None:
            if not isinstance(raw["architecture"], dict):
                raise ValueError(f"{where}: 'architecture' must be an object")
            given = dict(raw["architecture"])
            ffn = given.pop("feed_forward_length", 0)  # optional: 0 means not stated
            if isinstance(ffn, bool) or not isinstance(ffn, int) or ffn < 0:
                raise ValueError(
                    f"{where}.architecture: 'feed_forward_length' must be an integer >= 0, "
                    f"got {ffn!r}"
                )
            arch_fields = _typed(f"{where}.architecture", given, _ARCH_FIELDS)
            arch = Architecture(**arch_fields, feed_forward_length=ffn)
        entry = CatalogEntry(**fields, architecture=arch)
        check_entry(entry, f"{where} ({entry.name!r})")
        if entry.name in catalog:
            raise ValueError(f"{where}: duplicate name {entry.name!r}")
        catalog[entry.name] = entry
    return catalog


def catalog_as_dicts(catalog: Mapping[str, CatalogEntry]) -> list[dict[str, Any]]:
    """The catalogue as JSON-ready dicts, with ``min_memory_bytes`` added."""
    return [{**asdict(e), "min_memory_bytes": e.min_memory_bytes()} for e in catalog.values()]


def sha256_file(
    path: str | os.PathLike[str], *, progress: Callable[[int], None] | None = None
) -> str:
    """SHA-256 of a file, read in 8 MiB chunks; ``progress`` gets each chunk's length."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def _import_hf_hub_download() -> Callable[..., str]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ImportError(f"setraf pull needs huggingface_hub: {_EXTRA_HINT} ({exc})") from exc
    return hf_hub_download


def _hf_tqdm_module() -> Any:
    """``huggingface_hub.utils.tqdm`` the module (the package attribute is the class)."""
    return importlib.import_module("huggingface_hub.utils.tqdm")


def _verified_sha256(path: Path, entry: CatalogEntry, show_progress: bool) -> str:
    """Check the size, then hash with a progress bar (huggingface_hub's tqdm) if asked."""
    size = path.stat().st_size
    if size != entry.size:
        raise ChecksumMismatchError(
            f"{entry.name}: {path} has {size} bytes, the catalogue expects {entry.size}"
        )
    if not show_progress:
        return sha256_file(path)
    hf_tqdm: Any = _hf_tqdm_module().tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS
    bar_args: dict[str, Any] = {"unit": "B", "unit_scale": True, "disable": None}
    with hf_tqdm(total=size, desc=f"sha256 {path.name}", **bar_args) as bar:
        return sha256_file(path, progress=bar.update)


def pull(
    entry: CatalogEntry,
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    show_progress: bool = True,
    n_ctx: int = DEFAULT_N_CTX,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> PullResult:
    """Download ``entry`` into ``dest_dir``, verified, and return where it is.

    The entry is checked first (:func:`check_entry`): nothing on disk is touched for a
    refused one. A file already at ``dest_dir / entry.file`` is hashed: kept if it
    matches, an error if it does not (it is never overwritten silently). Otherwise the
    model's lock is taken (a concurrent pull of the same file waits up to
    ``lock_timeout`` seconds, then finds it installed), the free space is checked, and the
    file is fetched with :func:`huggingface_hub.hf_hub_download` at the pinned commit into
    a fresh ``dest_dir/.setraf-pull-XXXXXXXX/`` (0700); its size, SHA-256 and GGUF header
    are checked, and it is renamed into place. Whatever happens, the staging folder (and
    only it) is deleted.

    Args:
        entry: What to download (see :data:`CATALOG`, :func:`get_entry`).
        dest_dir: Destination folder (default :func:`default_models_dir`).
        show_progress: Show download and hashing progress bars on stderr (and a line
            when waiting for another pull).
        n_ctx: Context length for the memory estimate of the result.
        lock_timeout: Seconds to wait for another pull of the same model.

    Raises:
        ValueError: The entry is refused by :func:`check_entry` (names entry and field),
            or ``lock_timeout`` is negative.
        ImportError: huggingface_hub is missing (names the extra).
        ChecksumMismatchError: Size or SHA-256 differ from the catalogue's.
        FileExistsError: A different file already sits at the destination path.
        DiskFullError: Not enough free space in ``dest_dir`` (before or during the
            download); names the folder, the space needed and the space free.
        PullLockTimeout: Another pull of the same model held its lock for
            ``lock_timeout`` seconds (a :class:`TimeoutError`).
        PermissionError: The lock file is a link or belongs to another user.
        ConnectionError: The Hub (or ``HF_ENDPOINT``) could not be reached, or offline mode.
        LookupError: The repository, revision or file does not exist there.
        GGUFFormatError: The verified file is not a valid GGUF.
    """
    check_entry(entry)
    if not lock_timeout >= 0:  # NaN included
        raise ValueError(f"lock_timeout must be >= 0 seconds, got {lock_timeout!r}")
    dest = Path(dest_dir) if dest_dir is not None else default_models_dir()
    target = dest / entry.file
    if target.exists() or target.is_symlink():
        return _already_there(target, entry, show_progress, n_ctx)

    hf_hub_download = _import_hf_hub_download()
    dest.mkdir(parents=True, exist_ok=True)

    def waiting(holder: str) -> None:
        if show_progress:
            print(f"waiting for another setraf pull ({holder}) of {entry.file}…", file=sys.stderr)

    with model_lock(dest, entry.file, timeout=lock_timeout, on_wait=waiting):
        if target.exists() or target.is_symlink():  # the other pull installed it meanwhile
            return _already_there(target, entry, show_progress, n_ctx)
        _check_free_space(dest, entry)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))  # 0700, ours alone
        try:  # whatever happens (errors, Ctrl-C), nothing partial or unverified stays behind
            staged = Path(_download(hf_hub_download, entry, staging, show_progress))
            if staged.parent.resolve() != staging.resolve():
                raise OSError(f"{entry.name}: the download landed outside {staging}: {staged}")
            found = _verified_sha256(staged, entry, show_progress)
            if found != entry.sha256:
                raise ChecksumMismatchError(
                    f"{entry.name}: SHA-256 of the download is {found}, the catalogue expects "
                    f"{entry.sha256} ({entry.repo}@{entry.revision}/{entry.file}); the file was "
                    "deleted, nothing was installed"
                )
            info = read_gguf_header(staged)  # a verified file llama.cpp could not load: say so
            os.replace(staged, target)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or isinstance(exc, DiskFullError):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            raise DiskFullError(
                f"{dest} is full: {entry.name} needs {format_bytes(entry.size)} "
                f"({entry.size} bytes) and the download stopped with "
                f"{os.strerror(exc.errno)}; {format_bytes(_free_bytes(dest))} free now. The "
                "partial download was deleted, nothing was installed; free some space or "
                "pass another --dir"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return PullResult(target, True, estimate_gguf_bytes(info, n_ctx, repack=False))


def _already_there(
    target: Path, entry: CatalogEntry, show_progress: bool, n_ctx: int
) -> PullResult:
    """The verified model already at ``target``, or FileExistsError for another file."""
    same_size = target.is_file() and target.stat().st_size == entry.size
    found = _verified_sha256(target, entry, show_progress) if same_size else "?"
    if found != entry.sha256:
        what = f"sha256 {found}" if same_size else "another size or not a file"
        raise FileExistsError(
            f"{target} already exists but is not {entry.name} ({what}; expected "
            f"{entry.size} bytes, sha256 {entry.sha256}); move it away or pass another --dir"
        )
    info = read_gguf_header(target)
    return PullResult(target, False, estimate_gguf_bytes(info, n_ctx, repack=False))


def _free_bytes(path: Path) -> int:
    """Bytes an unprivileged user may still write on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _check_free_space(dest: Path, entry: CatalogEntry) -> None:
    """Refuse, before downloading, a model that cannot fit in ``dest``."""
    free = _free_bytes(dest)
    if free < entry.size:
        raise DiskFullError(
            f"not enough space in {dest}: {entry.name} needs {format_bytes(entry.size)} "
            f"({entry.size} bytes), {format_bytes(free)} ({free} bytes) free; nothing was "
            "downloaded. Free some space or pass another --dir"
        )


def _download(
    hf_hub_download: Callable[..., str], entry: CatalogEntry, staging: Path, show_progress: bool
) -> str:
    """Run ``hf_hub_download``, turning its errors into clear built-in ones."""
    from huggingface_hub import constants, errors

    bars = _hf_tqdm_module()
    where = f"{entry.repo}@{entry.revision}/{entry.file} from {constants.ENDPOINT}"
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(
            f"cannot download {where}: Hugging Face offline mode is on (HF_HUB_OFFLINE=1); "
            "unset it to download"
        )
    was_disabled = bars.are_progress_bars_disabled()
    if not show_progress:
        bars.disable_progress_bars()
    try:
        return hf_hub_download(
            repo_id=entry.repo, filename=entry.file, revision=entry.revision, local_dir=staging
        )
    except errors.OfflineModeIsEnabled as exc:
        raise ConnectionError(
            f"cannot download {where}: Hugging Face offline mode is on (HF_HUB_OFFLINE=1)"
        ) from exc
    except errors.LocalEntryNotFoundError as exc:
        # huggingface_hub's "the Hub could not be reached and nothing is cached"
        raise ConnectionError(f"cannot download {where}: {exc}") from exc
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise LookupError(f"cannot download {where}: {exc}") from exc
    except errors.EntryNotFoundError as exc:
        raise LookupError(f"cannot download {where}: no such file ({exc})") from exc
    except errors.HfHubHTTPError as exc:
        raise ConnectionError(f"cannot download {where}: {exc}") from exc
    except OSError as exc:  # size consistency check after retries, disk full, permissions
        wrapped = OSError(f"cannot download {where}: {exc}")
        wrapped.errno = exc.errno  # keep ENOSPC visible to the caller
        raise wrapped from exc
    finally:
        if not show_progress and not was_disabled:
            bars.enable_progress_bars()
