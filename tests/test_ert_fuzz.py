"""Property-based fuzzing of every ERT reader with mutations of the real files.

Only two outcomes are allowed: a complete Survey, or ERTFormatError. 8 files × 250
examples = 2,000 examples per run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_setraf.ert import ERTFormatError, Survey, load_survey

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ert"
FILES = sorted(p.name for p in SHARED.iterdir() if p.suffix != ".md") if SHARED.is_dir() else []


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


@pytest.mark.parametrize("name", FILES)
def test_readers_survive_mutations(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    original = (SHARED / name).read_bytes()
    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutated(original))
    def check(blob: bytes) -> None:
        path = folder / name
        path.write_bytes(blob)
        try:
            survey = load_survey(path)
        except ERTFormatError as exc:
            assert exc.path == path
            return
        _check_complete(survey)

    check()
