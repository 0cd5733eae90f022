"""Property-based fuzzing of every ERT reader with mutations of real and sample files.

Only two outcomes are allowed: a complete Survey, or ERTFormatError. The real files
(tests/data/ert, 8 × 250 examples) come through the ``ert_dir`` fixture, so a missing
data folder fails these tests instead of collecting zero examples; the format samples
in tests/data/ert_formats add 100 examples each.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, configuration, given, settings
from hypothesis import strategies as st

from helpers.checkpoint import cache_root
from langchain_setraf.ert import ERTFormatError, Survey, load_survey

# hypothesis keeps a constants cache: in the test cache, not in the repository root
configuration.set_hypothesis_home_dir(cache_root() / "hypothesis")

#: The files tests/data/ert/SOURCES.md lists (checked against the folder below).
REAL_FILES = (
    "geoelectrics_p3_dipoledipole_model.xyz",
    "geoelectrics_p3_wenner_ip.dat",
    "gimli_bedrock.dat",
    "gimli_bedrock_directpush.txt",
    "gimli_slagdump.ohm",
    "resipy_res2dinv_dd.dat",
    "setraf_readme_example.dat",
    "setraf_test_ert_data.csv",
)
SAMPLES = Path(__file__).resolve().parent / "data" / "ert_formats"
SAMPLE_FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix != ".md")


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(
            st.sampled_from(["truncate", "flip", "insert", "delete_line", "dup_line", "number"])
        )
        pos = draw(st.integers(0, len(data) - 1))
        if op == "truncate":
            del data[pos:]
        elif op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "delete_line":
                del lines[i]
            elif op == "dup_line":
                lines.insert(i, lines[i])
            else:
                lines[i] = draw(
                    st.sampled_from([b"-1", b"0", b"1e308", b"nan", b"99999999", b"", b"abc"])
                )
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _check_complete(s: Survey) -> None:
    assert s.cells or s.data
    for c in s.cells:
        assert math.isfinite(c.x) and math.isfinite(c.depth) and c.rho > 0
    for q in s.data:
        assert math.isfinite(q.rhoa)
        for i in (q.a, q.b, q.m, q.n):
            assert i is None or 0 <= i < len(s.electrodes)
    for x, z in s.electrodes:
        assert math.isfinite(x) and math.isfinite(z)


def _fuzz(original: bytes, name: str, folder: Path, examples: int) -> int:
    """Run ``examples`` mutations through load_survey; returns how many ran."""
    seen = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no example database written into the repository
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated(original))
    def check(blob: bytes) -> None:
        nonlocal seen
        seen += 1
        path = folder / name
        path.write_bytes(blob)
        try:
            survey = load_survey(path)
        except ERTFormatError as exc:
            assert exc.path == path
            return
        _check_complete(survey)

    check()
    return seen


def test_real_file_list_matches_the_folder(ert_dir: Path) -> None:
    assert {p.name for p in ert_dir.iterdir() if p.suffix != ".md"} == set(REAL_FILES)


def test_format_samples_are_there() -> None:
    assert len(SAMPLE_FILES) >= 10, SAMPLES


@pytest.mark.parametrize("name", REAL_FILES)
def test_readers_survive_mutations_of_real_files(
    ert_dir: Path, name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    original = (ert_dir / name).read_bytes()
    assert load_survey(ert_dir / name).n_cells > 0  # the unmutated file reads
    assert _fuzz(original, name, tmp_path_factory.mktemp("fuzz"), 250) >= 100


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_readers_survive_mutations_of_format_samples(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    original = (SAMPLES / name).read_bytes()
    assert load_survey(SAMPLES / name).n_cells > 0
    assert _fuzz(original, name, tmp_path_factory.mktemp("fuzz"), 100) >= 50
