"""The transformers backend sets ``OMP_WAIT_POLICY=PASSIVE`` before torch's first import,
unless the user chose a policy: torch loads OpenMP with the policy of that moment, and a
spinning OpenMP left by torch made a GGUF model's decoding after it 30 times slower
(benchmarks/omp_wait_policy_bench.py measures both sides).

Each case runs in a fresh child process (torch can be imported once per process); an
import hook records the environment's policy at the moment torch's import starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import langchain_setraf

CHILD = """
import importlib.abc, json, os, sys

seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "torch" not in seen:
            seen["torch"] = os.environ.get("OMP_WAIT_POLICY")
        return None

sys.meta_path.insert(0, Watch())
way, model = sys.argv[1], sys.argv[2]
if way == "tokenizer":  # count_tokens: the tokenizer alone (transformers imports torch)
    from langchain_setraf import TransformersEmbeddings
    TransformersEmbeddings(model=model).count_tokens("clay")
else:  # what a load of any transformers model calls first
    from langchain_setraf.backends.transformers.backend import import_transformers
    import_transformers()
print(json.dumps({"at_torch_import": seen.get("torch", "never imported"),
                  "after": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _child(way: str, model: Path, policy: str | None) -> dict[str, str | None]:
    ours = str(Path(langchain_setraf.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": ours, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), way, str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("way", ["tokenizer", "load"])
def test_torch_is_first_imported_with_a_passive_openmp(way: str, minilm_dir: Path) -> None:
    assert _child(way, minilm_dir, None) == {"at_torch_import": "PASSIVE", "after": "PASSIVE"}


def test_a_users_own_policy_is_kept(minilm_dir: Path) -> None:
    assert _child("tokenizer", minilm_dir, "ACTIVE") == {
        "at_torch_import": "ACTIVE",
        "after": "ACTIVE",
    }
