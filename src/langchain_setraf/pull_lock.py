"""One lock per model for ``setraf pull``: concurrent pulls of one file take turns.

The lock is an ``flock`` on a small file beside the model, ``.<file>.setraf-pull.lock``
in the models folder, opened with ``O_NOFOLLOW`` and created ``0600``. A lock file that is
a symbolic link, not a regular file, or owned by another user is refused (nothing is
written through it). The holder writes its pid into the file and deletes the file before
releasing the lock; a waiter that then locks the deleted file sees that the name no longer
points at it and starts again on the new file, so two processes never both believe they
hold the lock.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> with model_lock(d, "m.gguf", timeout=1.0):
    ...     sorted(p.name for p in d.iterdir())
    ['.m.gguf.setraf-pull.lock']
    >>> list(d.iterdir())
    []
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["LOCK_SUFFIX", "PullLockTimeout", "lock_path", "model_lock"]

#: Suffix of a model's lock file (``.<file><LOCK_SUFFIX>`` in the models folder).
LOCK_SUFFIX = ".setraf-pull.lock"
_POLL_S = 0.2


class PullLockTimeout(TimeoutError):
    """Another ``setraf pull`` of the same model held the lock for the whole wait."""


def lock_path(dest: Path, file: str) -> Path:
    """The lock file of model file ``file`` in the models folder ``dest``."""
    return dest / f".{file}{LOCK_SUFFIX}"


def _open_lock(path: Path) -> int:
    """Open (create 0600) the lock file without following links; refuse a stranger's."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(
                f"{path}: the pull lock file is a symbolic link; refusing to follow it "
                "(remove it if you did not create it)"
            ) from None
        raise
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif st.st_uid != os.geteuid():
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    if problem is not None:
        os.close(fd)
        raise PermissionError(f"{path}: the pull lock file {problem}; refusing to use it")
    return fd


def _holder(path: Path) -> str:
    """``"pid N"`` from the lock file, or ``"another process"``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return "another process"
    try:
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return f"pid {text}" if text.isdigit() else "another process"


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not deleted or replaced)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def model_lock(
    dest: Path,
    file: str,
    *,
    timeout: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the pull lock of ``dest / file`` for the ``with`` block.

    Args:
        dest: The models folder (must exist).
        file: The model's file name (already checked to be a plain name).
        timeout: Seconds to wait for another holder before giving up.
        on_wait: Called once, with the holder (``"pid N"``), when the lock is busy.

    Raises:
        PullLockTimeout: Still held by another pull after ``timeout`` seconds (names the
            holder and the lock file).
        PermissionError: The lock file is a link, not a regular file, or not yours.
    """
    path = lock_path(dest, file)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            if time.monotonic() >= deadline:
                raise PullLockTimeout(
                    f"another setraf pull ({holder}) is still installing {file} into {dest}; "
                    f"gave up after {timeout:g} s waiting for its lock {path} "
                    "(wait longer with --wait SECONDS, or try again when it has finished)"
                ) from None
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            time.sleep(_POLL_S)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _still_named(fd, path):
            break
        os.close(fd)  # the previous holder deleted it as we locked it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still held: a waiter that locks the old file will retry
        os.close(fd)
