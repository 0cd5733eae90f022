"""Attacks on ``setraf pull``: hostile catalogues, concurrent pulls, a full disk.

Every pull runs the real CLI in a subprocess with the real huggingface_hub client against
the loopback Hub of :mod:`helpers.fake_hub` (nothing leaves 127.0.0.1). The disk-full
cases mount a real tmpfs in a private mount namespace (root only).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.fake_hub import (
    REPO_ID,
    FakeHub,
    catalog_entry,
    pull_command,
    pull_env,
    run_pull,
    serve_fake_hub,
    write_catalog,
)
from helpers.users import why_no_mount_namespace
from langchain_setraf.pull import CATALOG, STAGING_PREFIX, CatalogEntry, check_entry, pull
from langchain_setraf.pull_lock import lock_path


@pytest.fixture()
def fake_hub(smollm2_path: Path) -> Iterator[FakeHub]:
    with serve_fake_hub(smollm2_path) as hub:
        yield hub


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the SHA-256 of its content (``dir`` for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _thesis(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A sibling of the models folder holding a user's work: what the attack aims at."""
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "01.tex").write_text("\\chapter{Resistivity}\n", encoding="utf-8")
    (thesis / "data.csv").write_text("x,rho\n0,12.5\n", encoding="utf-8")
    return thesis, _snapshot(thesis)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("name", "../../thesis", "contains '..'"),
        ("file", "../../thesis", "contains '..'"),
        ("name", "/tmp/thesis", "is an absolute path"),
        ("file", "/etc/passwd", "is an absolute path"),
        ("file", "C:\\Users\\x.gguf", "is an absolute path"),
        ("name", "a\\b", "contains '\\\\'"),
        ("file", "models/x.gguf", "contains '/'"),
        ("file", "x\x00.gguf", "contains a NUL byte"),
        ("name", ".setraf-pull", "starts with '.'"),
    ],
)
def test_a_hostile_catalogue_entry_is_refused_before_anything_is_touched(
    tmp_path: Path, fake_hub: FakeHub, field: str, value: str, problem: str
) -> None:
    models = tmp_path / "models"
    thesis, before = _thesis(tmp_path)
    cat = write_catalog(tmp_path / "catalog.json", catalog_entry(fake_hub, **{field: value}))
    name = value if field == "name" else "smollm2-test"
    proc = run_pull(
        fake_hub, tmp_path / "hf-home", [name, "--catalog", str(cat), "--dir", str(models)]
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    entry_name = "smollm2-test" if field == "file" else value
    assert f"catalog.json: models[0] ({entry_name!r}): {field!r}" in proc.stderr, proc.stderr
    assert f"{field!r} {value!r} {problem}" in proc.stderr, proc.stderr
    assert _snapshot(thesis) == before, "the sibling folder was changed"
    assert not models.exists(), "the models folder was created for a refused entry"
    assert fake_hub.requests == [], "the Hub was asked for a refused entry"


def test_the_staging_rmtree_of_the_old_pull_cannot_reach_a_sibling(tmp_path: Path) -> None:
    """The library call, not only the CLI: ``../../thesis`` is refused before any mkdir."""
    models = tmp_path / "models"
    thesis, before = _thesis(tmp_path)
    entry = CatalogEntry(
        "../../thesis", REPO_ID, "x.gguf", "0" * 40, 10, "0" * 64, "MIT", "Q4_0", "evil"
    )
    with pytest.raises(ValueError, match=r"catalogue entry '\.\./\.\./thesis': 'name'"):
        pull(entry, models, show_progress=False)
    assert _snapshot(thesis) == before
    assert not models.exists()


def test_a_negative_wait_is_refused(tmp_path: Path) -> None:
    entry = CatalogEntry("m", REPO_ID, "m.gguf", "0" * 40, 10, "0" * 64, "MIT", "Q4_0", "")
    with pytest.raises(ValueError, match=r"lock_timeout must be >= 0 seconds, got -1"):
        pull(entry, tmp_path / "models", lock_timeout=-1)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    "revision", ["main", "v1.0", "refs/pr/1", "21EF23001F314D0895BD8439B08157C2D4CD9BB7"]
)
def test_a_revision_that_is_not_a_commit_is_refused(
    tmp_path: Path, fake_hub: FakeHub, revision: str
) -> None:
    cat = write_catalog(tmp_path / "catalog.json", catalog_entry(fake_hub, revision=revision))
    models = tmp_path / "models"
    proc = run_pull(
        fake_hub,
        tmp_path / "hf-home",
        ["smollm2-test", "--catalog", str(cat), "--dir", str(models)],
    )
    assert proc.returncode == 2
    assert f"'revision' {revision!r} must be a 40-hex commit hash" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert fake_hub.requests == []
    assert not models.exists()


def test_the_shipped_catalogue_is_pinned_to_commits() -> None:
    for entry in CATALOG.values():
        check_entry(entry)  # raises on a branch name, a path or a bad hash
        assert len(entry.revision) == 40


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_two_concurrent_pulls_of_one_model_take_turns(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.get_delay_s = 2.0  # the first download is in flight when the second starts
    models = tmp_path / "models"
    cat = write_catalog(tmp_path / "catalog.json", catalog_entry(fake_hub))
    args = pull_command("smollm2-test", "--catalog", str(cat), "--dir", str(models))
    env = pull_env(fake_hub, tmp_path / "hf-home")
    lock = lock_path(models, fake_hub.filename)
    popen = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    first = subprocess.Popen(args, **popen)  # type: ignore[call-overload]
    try:
        _wait_for(lock.exists, 60, "the first pull to take its lock")
        second = subprocess.Popen(args, **popen)  # type: ignore[call-overload]
        out1, err1 = first.communicate(timeout=300)
        out2, err2 = second.communicate(timeout=300)
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "Traceback" not in err1 + err2
    assert "downloaded and verified" in out1
    assert "already present, verified" in out2
    assert f"waiting for another setraf pull (pid {first.pid})" in err2
    assert len([r for r in fake_hub.requests if r[0] == "GET"]) == 1, "downloaded twice"
    target = models / fake_hub.filename
    assert hashlib.sha256(target.read_bytes()).hexdigest() == fake_hub.sha256
    assert sorted(p.name for p in models.iterdir()) == [fake_hub.filename], "leftovers"


@pytest.mark.slow
def test_a_pull_that_waits_too_long_fails_clearly(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.get_delay_s = 4.0
    models = tmp_path / "models"
    cat = write_catalog(tmp_path / "catalog.json", catalog_entry(fake_hub))
    base = ["smollm2-test", "--catalog", str(cat), "--dir", str(models)]
    env = pull_env(fake_hub, tmp_path / "hf-home")
    first = subprocess.Popen(
        pull_command(*base), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lock_path(models, fake_hub.filename).exists, 60, "the first pull's lock")
        impatient = run_pull(fake_hub, tmp_path / "hf-home", [*base, "--wait", "0.5"])
        _, err1 = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert impatient.returncode == 2
    assert "Traceback" not in impatient.stderr
    assert f"another setraf pull (pid {first.pid}) is still installing" in impatient.stderr
    assert "gave up after 0.5 s" in impatient.stderr
    assert first.returncode == 0, err1
    assert sorted(p.name for p in models.iterdir()) == [fake_hub.filename]


def test_a_lock_file_planted_as_a_link_is_not_followed(tmp_path: Path, fake_hub: FakeHub) -> None:
    models = tmp_path / "models"
    models.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    victim.chmod(0o644)
    lock_path(models, fake_hub.filename).symlink_to(victim)
    cat = write_catalog(tmp_path / "catalog.json", catalog_entry(fake_hub))
    proc = run_pull(
        fake_hub,
        tmp_path / "hf-home",
        ["smollm2-test", "--catalog", str(cat), "--dir", str(models)],
    )
    assert proc.returncode == 2
    assert "is a symbolic link; refusing to follow it" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert victim.stat().st_mode & 0o777 == 0o644
    assert not [r for r in fake_hub.requests if r[0] == "GET"]


def _pull_on_tmpfs(
    tmp_path: Path, hub: FakeHub, size: str, filler_bytes: int = 0
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Pull into a fresh tmpfs of ``size`` in a private mount namespace.

    With ``filler_bytes``, another process writes that much into the tmpfs as soon as the
    pull's staging folder appears (the disk fills up during the download). Returns the
    pull's result and what the tmpfs held afterwards (listed inside the namespace).
    """
    models = tmp_path / "models"
    models.mkdir()
    cat = write_catalog(tmp_path / "catalog.json", catalog_entry(hub))
    listing = tmp_path / "listing.txt"
    pull_cmd = " ".join(
        f"'{a}'"
        for a in pull_command(
            "smollm2-test", "--catalog", str(cat), "--dir", str(models), "--quiet"
        )
    )
    filler = ""
    if filler_bytes:
        filler = (
            f"( while ! ls -d '{models}'/{STAGING_PREFIX}* >/dev/null 2>&1; do sleep 0.01; done; "
            f"head -c {filler_bytes} /dev/zero > '{models}/other-program.bin' 2>/dev/null ) & "
            "FILLER=$!; "
        )
    script = (
        f"mount -t tmpfs -o size={size},mode=0755 setraf-test '{models}' || exit 97; "
        f"{filler}{pull_cmd}; rc=$?; "
        + ("wait $FILLER; " if filler_bytes else "")
        + f"(cd '{models}' && find . -mindepth 1) > '{listing}'; exit $rc"
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=pull_env(hub, tmp_path / "hf-home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 97, f"could not mount the tmpfs: {proc.stderr}"
    return proc, sorted(listing.read_text(encoding="utf-8").split())


@pytest.mark.slow
def test_a_model_that_cannot_fit_is_refused_before_downloading(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    reason = why_no_mount_namespace()
    if reason:
        pytest.skip(reason)
    proc, left = _pull_on_tmpfs(tmp_path, fake_hub, "1m")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"not enough space in {tmp_path / 'models'}" in proc.stderr
    assert "free; nothing was downloaded" in proc.stderr
    assert left == [], f"files left on the full disk: {left}"
    assert not [r for r in fake_hub.requests if r[0] == "GET"]
    assert not (tmp_path / "models" / fake_hub.filename).exists()


@pytest.mark.slow
def test_a_disk_that_fills_up_during_the_download_leaves_nothing_behind(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    reason = why_no_mount_namespace()
    if reason:
        pytest.skip(reason)
    fake_hub.get_delay_s = 1.0  # the other program fills the disk before the body arrives
    size = len(fake_hub.payload)
    proc, left = _pull_on_tmpfs(tmp_path, fake_hub, str(size + 4 * 2**20), filler_bytes=size // 2)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path / 'models'} is full: smollm2-test needs" in proc.stderr
    assert "No space left on device" in proc.stderr
    assert "free now. The partial download was deleted, nothing was installed" in proc.stderr
    assert left == ["./other-program.bin"], f"the pull left files behind: {left}"
    assert [r for r in fake_hub.requests if r[0] == "GET"], "the download never started"


def test_the_model_lock_admits_one_holder_at_a_time_and_leaves_nothing(tmp_path: Path) -> None:
    """Threads open the lock file separately (own open file descriptions, as processes do)
    while each holder deletes it on release: never two holders, no file left."""
    import threading

    from langchain_setraf.pull_lock import model_lock

    inside: list[int] = []
    overlaps: list[tuple[int, ...]] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(20):
                with model_lock(tmp_path, "m.gguf", timeout=60):
                    inside.append(i)
                    if len(inside) > 1:
                        overlaps.append(tuple(inside))
                    time.sleep(0.001)
                    inside.remove(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not overlaps, f"two holders at once: {overlaps[:3]}"
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    from langchain_setraf.pull_lock import model_lock

    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another uid")
    lock = lock_path(tmp_path, "m.gguf")
    lock.write_text("", encoding="ascii")
    os.chown(lock, 65534, 65534)  # nobody
    with pytest.raises(PermissionError, match=r"is owned by uid 65534, not by you"):
        with model_lock(tmp_path, "m.gguf", timeout=1):
            pytest.fail("the lock was taken through a stranger's file")
    assert lock.stat().st_uid == 65534
