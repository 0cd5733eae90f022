"""``setraf pull``: the real huggingface_hub client against a loopback Hub serving SmolLM2.

The loopback Hub (:mod:`helpers.fake_hub`) implements just enough of the Hub's
file-resolve API for ``hf_hub_download``'s own code path to run. The CLI runs in a
subprocess with ``HF_ENDPOINT`` pointing at it, ``HF_HOME`` in ``tmp_path`` and
``HF_HUB_OFFLINE=0``: nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.fake_hub import (
    COMMIT,
    REPO_ID,
    FakeHub,
    architecture,
    catalog_entry,
    run_pull,
    serve_fake_hub,
    write_catalog,
)
from langchain_setraf.backends.gguf.estimate import estimate_gguf_bytes
from langchain_setraf.backends.gguf.file import read_gguf_header
from langchain_setraf.cli import main
from langchain_setraf.pull import (
    CATALOG,
    CatalogEntry,
    get_entry,
    load_catalog,
    pull,
)


@pytest.fixture()
def fake_hub(smollm2_path: Path) -> Iterator[FakeHub]:
    with serve_fake_hub(smollm2_path) as hub:
        yield hub


def _catalog(tmp_path: Path, hub: FakeHub, *, sha256: str | None = None) -> Path:
    entry = catalog_entry(hub, **({"sha256": sha256} if sha256 else {}))
    return write_catalog(tmp_path / "catalog.json", entry)


def _run_pull(
    tmp_path: Path, hub: FakeHub, *args: str, offline: str = "0"
) -> subprocess.CompletedProcess[str]:
    return run_pull(hub, tmp_path / "hf-home", args, offline=offline)


def _leftovers(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.is_file()] if dest.exists() else []


def test_pull_downloads_verifies_and_prints_the_model_line(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    dest = tmp_path / "models"
    cat = _catalog(tmp_path, fake_hub)
    proc = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), "--dir", str(dest))
    assert proc.returncode == 0, proc.stderr
    target = dest / fake_hub.filename
    assert hashlib.sha256(target.read_bytes()).hexdigest() == fake_hub.sha256
    assert f"--model {target}" in proc.stdout
    assert "downloaded and verified" in proc.stdout
    assert _leftovers(dest) == [target], "staging files were left behind"
    assert ("HEAD", f"/{REPO_ID}/resolve/{COMMIT}/{fake_hub.filename}", None) in fake_hub.requests
    gets = [r for r in fake_hub.requests if r[0] == "GET"]
    assert len(gets) == 1

    again = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), "--dir", str(dest))
    assert again.returncode == 0, again.stderr
    assert "already present, verified" in again.stdout
    assert len([r for r in fake_hub.requests if r[0] == "GET"]) == 1, "it downloaded again"


def test_checksum_mismatch_is_an_error_and_leaves_no_file(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    dest = tmp_path / "models"
    wrong = hashlib.sha256(b"not the model").hexdigest()
    cat = _catalog(tmp_path, fake_hub, sha256=wrong)
    args = ("smollm2-test", "--catalog", str(cat), "--dir", str(dest), "--quiet")
    proc = _run_pull(tmp_path, fake_hub, *args)
    assert proc.returncode == 2
    assert "%|" not in proc.stderr, "--quiet still drew a progress bar"
    assert "SHA-256 of the download is " + fake_hub.sha256 in proc.stderr
    assert wrong in proc.stderr
    assert "nothing was installed" in proc.stderr
    assert not (dest / fake_hub.filename).exists()
    assert _leftovers(dest) == []


def test_interrupted_download_resumes_with_a_range_request(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    half = len(fake_hub.payload) // 2
    fake_hub.drop_first_get_at = half
    dest = tmp_path / "models"
    cat = _catalog(tmp_path, fake_hub)
    proc = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), "--dir", str(dest))
    assert proc.returncode == 0, proc.stderr
    gets = [r for r in fake_hub.requests if r[0] == "GET"]
    assert len(gets) == 2, gets
    assert gets[0][2] is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", gets[1][2] or "")[1])  # type: ignore[index]
    assert 0 < resumed_at <= half, "the second request did not resume"
    target = dest / fake_hub.filename
    assert hashlib.sha256(target.read_bytes()).hexdigest() == fake_hub.sha256


def test_a_different_file_at_the_target_is_never_overwritten(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    dest = tmp_path / "models"
    dest.mkdir()
    target = dest / fake_hub.filename
    target.write_bytes(b"x" * len(fake_hub.payload))
    cat = _catalog(tmp_path, fake_hub)
    proc = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), "--dir", str(dest))
    assert proc.returncode == 2
    assert "already exists but is not smollm2-test" in proc.stderr
    assert target.read_bytes() == b"x" * len(fake_hub.payload)
    assert not [r for r in fake_hub.requests if r[0] == "GET"]


def test_list_shows_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "--list"]) == 0
    out = capsys.readouterr().out
    assert "mistral-7b-instruct-v0.2" in out
    assert "TheBloke/Mistral-7B-Instruct-v0.2-GGUF/mistral-7b-instruct-v0.2.Q4_K_M.gguf" in out
    assert "Apache-2.0" in out
    assert main(["pull", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(CATALOG)
    mistral = next(r for r in rows if r["name"] == "mistral-7b-instruct-v0.2")
    assert mistral["size"] == 4_368_439_584
    assert mistral["sha256"] == "3e0039fd0273fcbebb49228943b17831aadd55cbcbf56f0af00499be2040ccf9"
    # weights + KV cache (32 layers x 2048 x 8 KV heads x 256 x 2 bytes = 256 MiB) + buffers
    assert mistral["size"] + 256 * 2**20 < mistral["min_memory_bytes"] < mistral["size"] + 2**30


def test_catalogue_estimate_matches_the_estimate_from_the_real_header(smollm2_path: Path) -> None:
    info = read_gguf_header(smollm2_path)
    arch = architecture(info)
    size = smollm2_path.stat().st_size
    entry = CatalogEntry(
        "s", "r/r", smollm2_path.name, COMMIT, size, "0" * 64, "x", "Q4_1", "", arch
    )
    real = estimate_gguf_bytes(info, 2048, repack=False)
    approx = entry.min_memory_bytes(2048)
    assert approx is not None
    header_bytes = size - info.tensor_bytes
    assert 0 <= approx - real <= header_bytes


def test_bad_catalogue_and_unknown_name_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": [{"name": "x", "repo": "a/b"}]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json: models\[0\]: missing field 'file'"):
        load_catalog(bad)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_catalog(bad)
    with pytest.raises(LookupError, match=r"available: .*mistral-7b-instruct-v0\.2"):
        get_entry("gpt-5")
    assert main(["pull", "gpt-5"]) == 2


def test_missing_huggingface_hub_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"langchain-setraf\[pull\]"):
        pull(CATALOG["mistral-7b-instruct-v0.2"], tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_missing_file_and_an_unreachable_hub_are_clear_errors(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    dest = tmp_path / "models"
    cat = _catalog(tmp_path, fake_hub)
    data = json.loads(cat.read_text(encoding="utf-8"))
    data["models"][0]["file"] = "not-there.gguf"
    cat.write_text(json.dumps(data), encoding="utf-8")
    proc = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), "--dir", str(dest))
    assert proc.returncode == 2
    where = f"cannot download {REPO_ID}@{COMMIT}/not-there.gguf from {fake_hub.url}"
    assert f"{where}: no such file" in proc.stderr
    assert _leftovers(dest) == []

    asked = len(fake_hub.requests)
    offline = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), offline="1")
    assert offline.returncode == 2
    assert "Hugging Face offline mode is on (HF_HUB_OFFLINE=1)" in offline.stderr
    assert len(fake_hub.requests) == asked, "offline mode still asked the server"

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    fake_hub.url = closed
    proc = _run_pull(tmp_path, fake_hub, "smollm2-test", "--catalog", str(cat), "--dir", str(dest))
    assert proc.returncode == 2
    assert f"setraf: error: cannot download {REPO_ID}@{COMMIT}/not-there.gguf from {closed}" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert _leftovers(dest) == []
