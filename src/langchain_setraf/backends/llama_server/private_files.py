"""The managed servers' runtime directory and its files, private to the user.

The directory (see :func:`resolve_runtime_dir`) is accepted only when no other user can
change what is in it (:func:`check_runtime_dir`):

- **private** (the default): a real directory (not a symbolic link) owned by the user, with
  no group or world write bit; files are created ``0600``;
- **shared** (an explicit choice, through ``$SETRAF_RUNTIME_DIR`` only): a setgid directory
  of a group the user belongs to, owned by the user, by root or by a member of that group,
  with no world bits; files are created ``0660`` and must belong to the user or to that
  group.

Anything else raises :class:`InsecureRuntimeDirError` naming the path, its owner and mode
and how to fix it. Every file in it is opened with ``O_NOFOLLOW | O_CLOEXEC`` and checked
after the open (a regular file with one link, owned as above), so a link planted by
another user is refused instead of followed; files that change are replaced atomically
(a temporary file and a rename).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from langchain_setraf.settings import get_settings

__all__ = [
    "RUNTIME_DIR_ENV",
    "InsecureRuntimeDirError",
    "RuntimeDir",
    "check_runtime_dir",
    "open_runtime_file",
    "read_runtime_file",
    "resolve_runtime_dir",
    "write_runtime_file",
]

#: Environment variable naming the runtime directory (the only way to choose a shared one).
RUNTIME_DIR_ENV: Final = "SETRAF_RUNTIME_DIR"
#: Largest runtime file read back (state, exit records): anything bigger is not ours.
MAX_READ_BYTES: Final = 1 << 20
_OPEN_FLAGS: Final = os.O_NOFOLLOW | os.O_CLOEXEC


class InsecureRuntimeDirError(PermissionError):
    """The runtime directory, or a file in it, could be changed by another user.

    The message names the path, its owner and mode, and how to fix it.
    """


@dataclass(frozen=True)
class RuntimeDir:
    """A checked runtime directory.

    Attributes:
        path: The directory.
        shared_gid: The group it is shared with (a setgid directory chosen through
            ``$SETRAF_RUNTIME_DIR``); ``None``: private to the user.
    """

    path: Path
    shared_gid: int | None = None

    @property
    def file_mode(self) -> int:
        """The mode of the files created in it: ``0600``, or ``0660`` when shared."""
        return 0o600 if self.shared_gid is None else 0o660


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _describe(path: Path | str, st: os.stat_result) -> str:
    return (
        f"{path} (owner {_user(st.st_uid)}, group {_group(st.st_gid)}, "
        f"mode {stat.filemode(st.st_mode)} {stat.S_IMODE(st.st_mode):04o})"
    )


def _in_group(uid: int, gid: int) -> bool:
    """Whether user ``uid`` is a member of group ``gid`` (primary or supplementary)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return False
    if entry.pw_gid == gid:
        return True
    try:
        return entry.pw_name in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def _user_in_group(gid: int) -> bool:
    return gid == os.getegid() or gid in os.getgroups() or _in_group(os.getuid(), gid)


def resolve_runtime_dir(env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """Where the runtime directory is, and whether it was chosen explicitly.

    ``$SETRAF_RUNTIME_DIR`` when set; else ``$XDG_RUNTIME_DIR/langchain-setraf`` when
    ``$XDG_RUNTIME_DIR`` is a directory owned by the user that no one else can write; else
    ``$XDG_CACHE_HOME/langchain-setraf/run`` (``~/.cache/langchain-setraf/run``).

    Returns:
        (path, explicit): ``explicit`` is true for ``$SETRAF_RUNTIME_DIR`` (the only
        choice that may be a shared directory).
    """
    env = os.environ if env is None else env
    configured = get_settings(env).runtime_dir
    if configured is not None:
        return configured, True
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        with contextlib.suppress(OSError):
            st = os.lstat(xdg)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
                return Path(xdg) / "langchain-setraf", False
    cache = env.get("XDG_CACHE_HOME")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "langchain-setraf" / "run", False


def _private_group(gid: int) -> bool:
    """Whether ``gid`` is the user's own group (its primary group, with no other member)."""
    try:
        entry = pwd.getpwuid(os.getuid())
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return False
    return entry.pw_gid == gid and members <= {entry.pw_name}


def _check_ancestors(path: Path) -> None:
    """Refuse a directory whose parents someone else could rename it out of.

    Each parent (symbolic links resolved) must be owned by the user or root and writable by
    no one else, unless it is sticky (``/tmp``: others cannot rename what is ours) or only
    its owner's private group may write (``umask 002`` systems).
    """
    uid = os.getuid()
    for parent in Path(os.path.realpath(path.parent)).joinpath("x").parents:
        st = os.stat(parent)
        mode = st.st_mode
        problem = None
        if st.st_uid not in (uid, 0):
            problem = f"is owned by {_user(st.st_uid)}"
        elif not mode & stat.S_ISVTX and (
            mode & 0o002 or (mode & 0o020 and not _private_group(st.st_gid))
        ):
            problem = "is writable by other users (and not sticky)"
        if problem is not None:
            raise InsecureRuntimeDirError(
                f"server runtime directory {path}: its parent {_describe(parent, st)} "
                f"{problem}, who could replace the directory; set {RUNTIME_DIR_ENV} to a "
                "directory under one of your own"
            )


def check_runtime_dir(path: Path, *, allow_shared: bool, create: bool = True) -> RuntimeDir:
    """Create ``path`` (``0700``) when missing and check that no other user controls it.

    Args:
        path: The directory.
        allow_shared: Accept a setgid group directory (see the module's docstring).
        create: Create it (and missing parents) when it does not exist.

    Raises:
        InsecureRuntimeDirError: A symbolic link, not a directory, owned by someone else,
            or group/world-writable (outside the shared form); or a parent another user
            could rename it out of.
        OSError: It cannot be created.
    """
    path = Path(os.path.abspath(path))
    if create:
        missing = [d for d in (path, *path.parents) if not os.path.lexists(d)]
        for directory in reversed(missing):  # parents first, each 0700 whatever the umask
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                continue  # created meanwhile: checked below like any other
            except OSError as exc:
                raise OSError(f"cannot create the server runtime directory {path}: {exc}") from exc
            os.chmod(directory, 0o700, follow_symlinks=False)
    _check_ancestors(path)
    st = os.lstat(path)
    fix = f"remove it or set {RUNTIME_DIR_ENV} to a directory of your own (mode 0700)"
    if stat.S_ISLNK(st.st_mode):
        raise InsecureRuntimeDirError(
            f"server runtime directory {_describe(path, st)} is a symbolic link: a link may "
            f"point at another user's directory; {fix}"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise InsecureRuntimeDirError(
            f"server runtime directory {_describe(path, st)} is not a directory; {fix}"
        )
    mode = stat.S_IMODE(st.st_mode)
    uid = os.getuid()
    if st.st_uid == uid and not mode & 0o022:
        return RuntimeDir(path)
    if allow_shared and mode & stat.S_ISGID and not mode & 0o007:
        owner_ok = st.st_uid in (uid, 0) or _in_group(st.st_uid, st.st_gid)
        if owner_ok and _user_in_group(st.st_gid):
            return RuntimeDir(path, shared_gid=st.st_gid)
    if st.st_uid != uid:
        why = f"is owned by {_user(st.st_uid)}, not by you ({_user(uid)})"
    else:
        why = "is writable by other users"
    shared = (
        f"; to share servers with a group, set {RUNTIME_DIR_ENV} to a setgid directory of "
        "that group with no world bits (chgrp GROUP DIR; chmod 2770 DIR)"
    )
    raise InsecureRuntimeDirError(
        f"server runtime directory {_describe(path, st)} {why}: another user could plant "
        f"links or state in it; {fix}{shared}"
    )


def _check_file(runtime: RuntimeDir, path: Path, fd: int) -> None:
    st = os.fstat(fd)
    uid = os.getuid()
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif st.st_nlink != 1:
        problem = f"has {st.st_nlink} hard links (one may be another user's file)"
    elif st.st_uid != uid and not (
        runtime.shared_gid is not None
        and st.st_gid == runtime.shared_gid
        and not st.st_mode & 0o002
    ):
        problem = f"is owned by {_user(st.st_uid)}"
    # a file of ours with loose bits was reachable by no one else (the directory is
    # checked): it is tightened below
    if problem is not None:
        raise InsecureRuntimeDirError(
            f"server runtime file {_describe(path, st)} {problem}: refused; remove it "
            "(another user may have planted it)"
        )
    if st.st_uid == uid and stat.S_IMODE(st.st_mode) != runtime.file_mode:
        os.fchmod(fd, runtime.file_mode)


def open_runtime_file(runtime: RuntimeDir, path: Path, flags: int, *, create: bool = True) -> int:
    """Open a file of ``runtime`` without following a link, and check who owns it.

    Args:
        runtime: The checked directory ``path`` is in.
        path: The file.
        flags: ``os.O_*`` access flags (``O_NOFOLLOW | O_CLOEXEC`` are added).
        create: Create it (``runtime.file_mode``) when missing.

    Returns:
        The open descriptor (the caller closes it).

    Raises:
        InsecureRuntimeDirError: A symbolic link, not a regular file, hard-linked, or owned
            by another user (outside the shared group).
        FileNotFoundError: ``create`` is false and it does not exist.
    """
    flags |= _OPEN_FLAGS | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, runtime.file_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symbolic link
            raise InsecureRuntimeDirError(
                f"server runtime file {path} is a symbolic link: refused (another user may "
                "have planted it to make you write to one of your files); remove it"
            ) from None
        raise
    try:
        _check_file(runtime, path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_runtime_file(runtime: RuntimeDir, path: Path) -> bytes | None:
    """The content of a runtime file (``None``: it does not exist).

    Raises:
        InsecureRuntimeDirError: See :func:`open_runtime_file`.
    """
    try:
        fd = open_runtime_file(runtime, path, os.O_RDONLY, create=False)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        size = 0
        while size <= MAX_READ_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[: MAX_READ_BYTES + 1]
    finally:
        os.close(fd)


def write_runtime_file(runtime: RuntimeDir, path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a new private file and a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, runtime.file_mode)
    try:
        try:
            os.fchmod(fd, runtime.file_mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
