"""Real unprivileged users and a private mount namespace to run them in, for attack tests.

Needs root (to create users and namespaces) and the ``useradd``/``userdel``, ``unshare``,
``nsenter`` and ``setpriv`` programs; :func:`why_unavailable` says what is missing, so a
fixture can skip with the reason.

API (what ``tests/security/conftest.py`` builds its fixtures on):

- :func:`create_user` / :func:`remove_user`: a real login-less user (``useradd --system
  --no-create-home --user-group``; an existing one of that name is reused) and its removal
  (every process it still runs is killed first, by pid).
- :class:`Namespace`: one private mount namespace (``unshare --mount --propagation
  private``) held by a ``sleep`` process, with a fresh ``tmpfs`` on ``/tmp`` (mode 1777,
  shared by every user run in it, invisible to the host) and a ``0700`` home
  ``/tmp/home/<name>`` per user. :meth:`Namespace.run` runs a command as a user inside it
  (``nsenter --mount`` + ``setpriv --reuid --regid --init-groups``) with a clean
  environment (``HOME``, ``USER``, ``PATH``, ``PYTHONPATH=<repo>/src``, no
  ``XDG_RUNTIME_DIR`` unless given); :meth:`Namespace.python` runs a Python snippet with
  the test virtualenv's interpreter and returns the JSON its last output line holds;
  :meth:`Namespace.popen` starts a long-lived command. :meth:`Namespace.close` kills every
  process of the namespace's users (by pid) and the holder; the tmpfs goes with the
  namespace.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

#: The repository whose ``src`` the users import.
REPO = Path(__file__).resolve().parents[2]
_TOOLS = ("useradd", "userdel", "unshare", "nsenter", "setpriv", "mount")


@dataclass(frozen=True)
class LocalUser:
    """A real user of this host.

    Attributes:
        name: Login name.
        uid: User id.
        gid: Primary group id.
        home: Its home inside a :class:`Namespace` (``/tmp/home/<name>``).
    """

    name: str
    uid: int
    gid: int

    @property
    def home(self) -> Path:
        """``/tmp/home/<name>`` (exists inside a :class:`Namespace` only)."""
        return Path("/tmp/home") / self.name


def why_no_mount_namespace() -> str | None:
    """Why a private mount namespace (``unshare --mount``) cannot be made here (``None``:
    it can)."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs in a private mount namespace"
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create a mount namespace: {probe.stderr.strip()}"
    return None


def why_unavailable() -> str | None:
    """Why real users cannot be used here (``None``: they can)."""
    if os.geteuid() != 0:
        return "creating users and mount namespaces needs root"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing programs: {', '.join(missing)}"
    return why_no_mount_namespace()


def create_user(name: str, *, groups: Sequence[str] = ()) -> LocalUser:
    """Create (or reuse) the login-less system user ``name``, member of ``groups``."""
    for group in groups:
        subprocess.run(["groupadd", "-f", group], check=True, capture_output=True)
    try:
        pwd.getpwnam(name)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--user-group"]
        cmd += ["--home-dir", f"/tmp/home/{name}", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*cmd, name], check=True, capture_output=True, text=True)
    if groups:
        subprocess.run(["usermod", "-a", "-G", ",".join(groups), name], check=True)
    entry = pwd.getpwnam(name)
    return LocalUser(name, entry.pw_uid, entry.pw_gid)


def kill_processes_of(uids: Sequence[int]) -> None:
    """SIGKILL every process whose real uid is one of ``uids`` (test users only)."""
    victims = []
    for proc in psutil.process_iter(["uids"]):
        uids_of = proc.info.get("uids")
        if uids_of is not None and uids_of.real in uids:
            victims.append(proc)
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


def remove_user(user: LocalUser, *, groups: Sequence[str] = ()) -> None:
    """Kill the user's processes and delete it (and ``groups``)."""
    kill_processes_of([user.uid])
    subprocess.run(["userdel", user.name], check=False, capture_output=True)
    for group in groups:
        subprocess.run(["groupdel", group], check=False, capture_output=True)


class Namespace:
    """A private mount namespace with its own ``/tmp`` (see the module's docstring)."""

    def __init__(self, users: Sequence[LocalUser], *, python: str = sys.executable) -> None:
        """Create the namespace, its tmpfs ``/tmp`` and a ``0700`` home per user, and make
        ``python`` (the test virtualenv's interpreter) reachable by them (see
        :meth:`expose`)."""
        self.users = list(users)
        self.interpreter = python
        script = "mount -t tmpfs -o mode=1777,size=64m setraf-test /tmp && exec sleep 86400"
        self._holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while not self._tmpfs_ready():
            if self._holder.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the test mount namespace did not start")
            time.sleep(0.05)
        for user in self.users:
            home = user.home
            self.run_root(["mkdir", "-p", "-m", "0700", str(home)])
            self.run_root(["chown", f"{user.uid}:{user.gid}", str(home)])
        self.expose(os.path.realpath(python))

    def expose(self, path: str) -> None:
        """Make ``path`` reachable by other users inside the namespace only.

        An interpreter under a closed home (``/root/.pyenv/...``, ``/root`` being 0700)
        cannot be run by another uid: its first closed ancestor is covered, in this
        namespace, by an empty tmpfs (0755) into which the one subtree on the way to
        ``path`` is bind-mounted back. The host's permissions are not changed.
        """
        target = Path(path)
        closed = next(
            (
                d
                for d in reversed(target.parents)
                if d != Path("/") and not os.stat(d).st_mode & 0o001
            ),
            None,
        )
        if closed is None:
            return
        child = closed / target.relative_to(closed).parts[0]
        stage = f"/tmp/.setraf-expose-{os.getpid()}"
        script = (
            f'set -e; mkdir -p "{stage}"; mount --bind "{child}" "{stage}"; '
            f'mount -t tmpfs -o mode=0755,size=1m setraf-expose "{closed}"; '
            f'mkdir -p "{child}"; mount --bind "{stage}" "{child}"; '
            f'umount "{stage}"; rmdir "{stage}"'
        )
        self.run_root(["sh", "-c", script])

    @property
    def pid(self) -> int:
        """The process holding the namespace (``nsenter --target``)."""
        return self._holder.pid

    def _tmpfs_ready(self) -> bool:
        try:
            mounts = Path(f"/proc/{self._holder.pid}/mounts").read_text()
        except OSError:
            return False
        return any(line.split()[:2] == ["setraf-test", "/tmp"] for line in mounts.splitlines())

    def run_root(
        self, argv: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as root inside the namespace."""
        return subprocess.run(
            ["nsenter", f"--target={self.pid}", "--mount", "--", *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def _argv(self, user: LocalUser, argv: Sequence[str]) -> list[str]:
        return [
            "nsenter",
            f"--target={self.pid}",
            "--mount",
            "--",
            "setpriv",
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--init-groups",
            "--",
            *argv,
        ]

    def env(self, user: LocalUser, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The clean environment commands of ``user`` get."""
        env = {
            "HOME": str(user.home),
            "USER": user.name,
            "LOGNAME": user.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(REPO / "src"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(
        self,
        user: LocalUser,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as ``user`` in the namespace (cwd ``/``); never raises on failure."""
        return subprocess.run(
            self._argv(user, argv),
            env=self.env(user, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )

    def popen(
        self, user: LocalUser, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``argv`` as ``user`` in the namespace (stdout piped, text)."""
        return subprocess.Popen(
            self._argv(user, argv),
            env=self.env(user, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )

    def python(
        self,
        user: LocalUser,
        code: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ) -> Any:
        """Run ``code`` as ``user``; return the JSON on its last output line.

        Raises:
            AssertionError: It exited non-zero or printed no JSON (output quoted).
        """
        done = self.run(user, [self.interpreter, "-c", code], env=env, timeout=timeout)
        lines = done.stdout.strip().splitlines()
        assert done.returncode == 0 and lines, (
            f"snippet as {user.name} exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
        return json.loads(lines[-1])

    def close(self) -> None:
        """Kill the users' processes and the holder (the namespace and its tmpfs go)."""
        kill_processes_of([u.uid for u in self.users])
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait(timeout=10)
