"""Fixtures for attack tests as real users (built on :mod:`helpers.users`).

- ``alice``, ``mallory`` (session): two real unprivileged users, ``setraf-alice`` (the
  victim) and ``setraf-mallory`` (the attacker), both members of the group
  ``setraf-share`` (for tests of an explicitly shared runtime directory); created with
  ``useradd`` and removed, with every process they still run, at the end of the session.
  Skipped, with the reason, when not root, when a needed program is missing, or when
  those users cannot read the repository, the virtualenv or the default model.
- ``share_group`` (session): the name of that group.
- ``userns`` (function): a :class:`helpers.users.Namespace` holding both users: a
  private mount namespace with its own tmpfs ``/tmp`` and homes ``/tmp/home/<name>``
  (``0700``); ``userns.python(alice, code, env={...})`` runs a Python snippet as alice
  and returns the JSON of its last output line; ``userns.run(user, argv)`` runs a
  command; ``userns.popen(user, argv)`` starts one; ``userns.run_root(argv)`` runs a
  command as root inside the namespace (to prepare a directory). The virtualenv's
  interpreter is made reachable in the namespace when it lives under a closed directory
  (``/root/.pyenv``; see :meth:`helpers.users.Namespace.expose`). Every process of both
  users is killed when the test ends.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.users import LocalUser, Namespace, create_user, remove_user, why_unavailable

SHARE_GROUP = "setraf-share"
_USERS = ("setraf-alice", "setraf-mallory")


@pytest.fixture(scope="session")
def share_group() -> str:
    """The group both test users belong to."""
    return SHARE_GROUP


@pytest.fixture(scope="session")
def _test_users(smollm2_path: Path) -> Iterator[dict[str, LocalUser]]:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(f"attacks as real users: {reason}")
    users = {name: create_user(name, groups=[SHARE_GROUP]) for name in _USERS}
    try:
        check = Namespace(list(users.values()))
        try:
            probe = check.run(
                users["setraf-alice"],
                [
                    sys.executable,
                    "-c",
                    "import langchain_setraf, subprocess, xllamacpp, sys; "
                    "open(sys.argv[1], 'rb').close(); "
                    "subprocess.run([sys.executable, '-c', ''], check=True)",
                    str(smollm2_path),
                ],
            )
        finally:
            check.close()
        if probe.returncode != 0:
            pytest.skip(
                "the test users cannot read the repository, the virtualenv or the model "
                f"(a clone under /root?): {probe.stderr.strip()[-500:]}"
            )
        yield users
    finally:
        for i, user in enumerate(users.values()):
            remove_user(user, groups=[SHARE_GROUP] if i == len(users) - 1 else ())


@pytest.fixture(scope="session")
def alice(_test_users: dict[str, LocalUser]) -> LocalUser:
    """The victim: ``setraf-alice``."""
    return _test_users["setraf-alice"]


@pytest.fixture(scope="session")
def mallory(_test_users: dict[str, LocalUser]) -> LocalUser:
    """The attacker: ``setraf-mallory``."""
    return _test_users["setraf-mallory"]


@pytest.fixture()
def userns(alice: LocalUser, mallory: LocalUser) -> Iterator[Namespace]:
    """A fresh private mount namespace (own ``/tmp``) for alice and mallory."""
    ns = Namespace([alice, mallory])
    try:
        yield ns
    finally:
        ns.close()
