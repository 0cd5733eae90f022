"""The runtime directory's checks, in this process (no second user needed: these run
everywhere; ``test_runtime_dir.py`` runs the same attacks as real users).

Planted links, hard links, loose modes and directories of other owners are refused by
name; files are created 0600 whatever the umask; the state is replaced atomically.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_setraf.backends.llama_server.private_files import (
    InsecureRuntimeDirError,
    RuntimeDir,
    check_runtime_dir,
    open_runtime_file,
    read_runtime_file,
    resolve_runtime_dir,
    write_runtime_file,
)

NOBODY = 65534


@pytest.fixture()
def loose_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_resolution_order(tmp_path: Path) -> None:
    mine = tmp_path / "xdg"
    mine.mkdir()
    home_cache = tmp_path / "cache"
    assert resolve_runtime_dir({"SETRAF_RUNTIME_DIR": "/x/run"}) == (Path("/x/run"), True)
    assert resolve_runtime_dir({"XDG_RUNTIME_DIR": str(mine)}) == (
        mine / "langchain-setraf",
        False,
    )
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "missing"), "XDG_CACHE_HOME": str(home_cache)}
    assert resolve_runtime_dir(env) == (home_cache / "langchain-setraf" / "run", False)
    link = tmp_path / "xdg-link"
    link.symlink_to(mine)  # a link is not "a directory owned by the user"
    env = {"XDG_RUNTIME_DIR": str(link), "XDG_CACHE_HOME": str(home_cache)}
    assert resolve_runtime_dir(env)[0] == home_cache / "langchain-setraf" / "run"


def test_created_0700_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    runtime = check_runtime_dir(tmp_path / "a" / "run", allow_shared=False)
    assert runtime.shared_gid is None and runtime.file_mode == 0o600
    assert stat.S_IMODE(os.stat(runtime.path).st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o2777, 0o722])
def test_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(InsecureRuntimeDirError, match="writable by other users") as info:
        check_runtime_dir(directory, allow_shared=True)
    assert str(directory) in str(info.value) and f"{mode:04o}" in str(info.value)
    assert "SETRAF_RUNTIME_DIR" in str(info.value)


def test_a_symlinked_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "run"
    link.symlink_to(real)
    with pytest.raises(InsecureRuntimeDirError, match="symbolic link"):
        check_runtime_dir(link, allow_shared=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_a_dir_of_another_owner_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, -1)
    with pytest.raises(InsecureRuntimeDirError, match="is owned by") as info:
        check_runtime_dir(directory, allow_shared=True)
    assert "not by you" in str(info.value)


def test_a_setgid_group_dir_is_shared_only_when_allowed(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o2770)
    assert check_runtime_dir(directory, allow_shared=True).shared_gid == os.getegid()
    assert check_runtime_dir(directory, allow_shared=True).file_mode == 0o660
    with pytest.raises(InsecureRuntimeDirError, match="writable by other users"):
        check_runtime_dir(directory, allow_shared=False)  # the default dirs are never shared


def test_a_planted_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    runtime = check_runtime_dir(tmp_path / "run", allow_shared=False)
    victim = tmp_path / "thesis.txt"
    victim.write_text("chapter 3")
    victim.chmod(0o600)
    planted = runtime.path / "k.log"
    planted.symlink_to(victim)
    for flags in (os.O_WRONLY | os.O_APPEND, os.O_RDWR, os.O_RDONLY):
        with pytest.raises(InsecureRuntimeDirError, match="symbolic link") as info:
            open_runtime_file(runtime, planted, flags)
        assert str(planted) in str(info.value)
    with pytest.raises(InsecureRuntimeDirError):
        read_runtime_file(runtime, planted)
    assert victim.read_text() == "chapter 3" and stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_a_hard_link_or_a_non_regular_file_is_refused(tmp_path: Path) -> None:
    runtime = check_runtime_dir(tmp_path / "run", allow_shared=False)
    victim = tmp_path / "thesis.txt"
    victim.write_text("chapter 3")
    os.link(victim, runtime.path / "k.json")
    with pytest.raises(InsecureRuntimeDirError, match="2 hard links"):
        read_runtime_file(runtime, runtime.path / "k.json")
    os.mkfifo(runtime.path / "k.lock")
    with pytest.raises(InsecureRuntimeDirError, match="not a regular file"):
        open_runtime_file(runtime, runtime.path / "k.lock", os.O_RDWR | os.O_NONBLOCK)
    assert victim.read_text() == "chapter 3"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")
def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    runtime = check_runtime_dir(tmp_path / "run", allow_shared=False)
    planted = runtime.path / "k.json"
    planted.write_text('{"port": 1}')
    os.chown(planted, NOBODY, -1)
    with pytest.raises(InsecureRuntimeDirError, match="is owned by"):
        read_runtime_file(runtime, planted)


def test_files_are_0600_and_replaced_atomically(tmp_path: Path, loose_umask: None) -> None:
    runtime = check_runtime_dir(tmp_path / "run", allow_shared=False)
    path = runtime.path / "k.json"
    fd = open_runtime_file(runtime, path, os.O_RDWR)
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.stat().st_ino
    write_runtime_file(runtime, path, b'{"a": 1}')
    assert path.stat().st_ino != before  # a new file renamed over the old one
    assert read_runtime_file(runtime, path) == b'{"a": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in runtime.path.iterdir()) == ["k.json"]  # no temp left
    loose = runtime.path / "loose.json"
    loose.write_text("{}")  # 0666 under this umask: ours, so tightened on open
    assert read_runtime_file(runtime, loose) == b"{}"
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_a_missing_file_reads_as_none(tmp_path: Path) -> None:
    runtime = RuntimeDir(check_runtime_dir(tmp_path / "run", allow_shared=False).path)
    assert read_runtime_file(runtime, runtime.path / "nothing.json") is None


def test_a_parent_others_can_write_is_refused(tmp_path: Path) -> None:
    """Whoever can write a (non-sticky) parent could rename the runtime dir away and put
    his own in its place."""
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(InsecureRuntimeDirError, match="its parent") as info:
        check_runtime_dir(parent / "run", allow_shared=False)
    assert str(parent) in str(info.value) and "0777" in str(info.value)
    parent.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is ours
    assert check_runtime_dir(parent / "run", allow_shared=False).path == parent / "run"


def test_an_xdg_runtime_dir_others_can_write_is_not_used(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    xdg.chmod(0o777)
    env = {"XDG_RUNTIME_DIR": str(xdg), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert resolve_runtime_dir(env)[0] == tmp_path / "cache" / "langchain-setraf" / "run"


def test_the_supervisor_does_not_follow_a_planted_log_link(tmp_path: Path) -> None:
    """The supervisor opens its ``--log`` itself: a link there is refused (it starts
    nothing, reports the refusal to its starter at once) and the link's target is
    untouched."""
    import subprocess
    import sys

    runtime = check_runtime_dir(tmp_path / "run", allow_shared=False)
    victim = tmp_path / "thesis.txt"
    victim.write_text("chapter 3")
    victim.chmod(0o600)
    log = runtime.path / "k.log"
    log.symlink_to(victim)
    exit_file = runtime.path / "k.x.exit"
    argv = ["--log", str(log), "--exit-file", str(exit_file), "--", "true"]
    done = subprocess.run(  # the pipes close when the detached child is gone too
        [sys.executable, "-m", "langchain_setraf.backends.llama_server.supervisor", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "symbolic link: refused" in done.stderr and str(log) in done.stderr
    report = json.loads(done.stdout.splitlines()[0])  # its starter learns it at once
    assert report["server_pid"] is None and "symbolic link" in report["error"]
    assert victim.read_text() == "chapter 3" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (runtime.path / "k.x.exit").exists()
