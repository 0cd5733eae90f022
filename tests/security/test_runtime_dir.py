"""Attacks on the managed servers' runtime files by another local user (issue 21: #1, #3,
#14), run as real users in a private mount namespace.

``setraf-mallory`` prepares the ground (a directory, links to the victim's files, a held
lock); ``setraf-alice`` then uses the package as she normally would. Each test asserts
what alice needs: her files unchanged, a named error instead of a silent write, no
process of hers signalled, and answers within seconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers.users import LocalUser, Namespace

pytestmark = pytest.mark.slow  # users, namespaces and Python start-ups as other uids

SECRET = "alice's thesis, chapter 3\n"
PLANTED = "/tmp/langchain-setraf"  # the old shared default


#: A process that takes a lock file (argv[1]), names itself in it and holds it argv[2] s.
HOLDER = """
import fcntl, os, sys, time
import psutil
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{os.getpid()} {psutil.Process().create_time()}\\n".encode(), 0)
print("held", flush=True)
time.sleep(int(sys.argv[2]))
"""


def _snippet(model: Path, body: str) -> str:
    """Python run as a test user: ``spec`` bound, ``out`` printed as JSON."""
    head = f"""
        HOLDER = {HOLDER!r}
        import json, os, stat, sys, time
        from pathlib import Path
        from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
        from langchain_setraf.backends.llama_server import managed
        from langchain_setraf.backends.llama_server.managed import ManagedServer, InsecureRuntimeDirError
        spec = LlamaServerBackend().spec_for({str(model)!r}, n_ctx=256, n_parallel=1)
        out = {{}}
    """
    tail = "\nprint(json.dumps(out))\n"
    return textwrap.dedent(head) + textwrap.dedent(body) + tail


def _write_secret(ns: Namespace, alice: LocalUser) -> str:
    path = str(alice.home / "secret.txt")
    code = f"""
import json, os
fd = os.open({path!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, {SECRET!r}.encode()); os.close(fd)
print(json.dumps(True))
"""
    assert ns.python(alice, code)
    return path


def _stat_secret(ns: Namespace, alice: LocalUser, path: str) -> dict[str, object]:
    code = f"""
import json, os, stat
st = os.lstat({path!r})
print(json.dumps({{"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                  "link": stat.S_ISLNK(st.st_mode), "text": open({path!r}).read()}}))
"""
    result = ns.python(alice, code)
    assert isinstance(result, dict)
    return result


def _key(ns: Namespace, user: LocalUser, model: Path) -> str:
    code = _snippet(model, "out = managed.spec_key(spec)")
    key = ns.python(user, code)
    assert isinstance(key, str)
    return key


def _plant_links(ns: Namespace, mallory: LocalUser, directory: str, key: str, target: str) -> None:
    code = f"""
import json, os
for suffix in ("lock", "json", "log"):
    os.symlink({target!r}, os.path.join({directory!r}, f"{key}.{{suffix}}"))
print(json.dumps(sorted(os.listdir({directory!r}))))
"""
    assert len(ns.python(mallory, code)) == 3


def test_default_runtime_dir_is_private_and_ignores_a_planted_tmp_dir(
    userns: Namespace, alice: LocalUser, mallory: LocalUser, smollm2_path: Path
) -> None:
    secret = _write_secret(userns, alice)
    key = _key(userns, mallory, smollm2_path)
    userns.run(mallory, ["mkdir", "-m", "1777", PLANTED]).check_returncode()
    _plant_links(userns, mallory, PLANTED, key, secret)
    planted_xdg = "/tmp/mallory-xdg"  # an XDG_RUNTIME_DIR alice does not own is not used
    userns.run(mallory, ["mkdir", "-m", "0777", planted_xdg]).check_returncode()
    body = """
        directory = managed.runtime_dir()
        st = os.lstat(directory)
        server = ManagedServer.for_spec(spec)
        out = {"dir": str(directory), "server_dir": str(server.directory),
               "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "me": os.getuid()}
    """
    result = userns.python(
        alice, _snippet(smollm2_path, body), env={"XDG_RUNTIME_DIR": planted_xdg}
    )
    assert result["dir"] == str(alice.home / ".cache" / "langchain-setraf" / "run")
    assert result["server_dir"] == result["dir"]
    assert result["mode"] == 0o700 and result["uid"] == result["me"] == alice.uid
    after = _stat_secret(userns, alice, secret)
    assert after == {"mode": 0o600, "uid": alice.uid, "link": False, "text": SECRET}


def test_a_runtime_dir_another_user_prepared_is_refused_by_name(
    userns: Namespace, alice: LocalUser, mallory: LocalUser, smollm2_path: Path
) -> None:
    """Attack #1: mallory's sticky 1777 dir with links to alice's file, chosen by alice's
    ``$SETRAF_RUNTIME_DIR``: her load fails with a named error and writes nothing."""
    secret = _write_secret(userns, alice)
    key = _key(userns, mallory, smollm2_path)
    userns.run(mallory, ["mkdir", "-m", "1777", PLANTED]).check_returncode()
    _plant_links(userns, mallory, PLANTED, key, secret)
    body = """
        try:
            ManagedServer.for_spec(spec).ensure(start_timeout=60)
            out = {"error": None}
        except InsecureRuntimeDirError as exc:
            out = {"error": type(exc).__name__, "message": str(exc),
                   "is_permission_error": isinstance(exc, PermissionError)}
        out["entries"] = sorted(os.listdir(os.environ["SETRAF_RUNTIME_DIR"]))
    """
    result = userns.python(alice, _snippet(smollm2_path, body), env={"SETRAF_RUNTIME_DIR": PLANTED})
    assert result["error"] == "InsecureRuntimeDirError" and result["is_permission_error"]
    message = result["message"]
    assert PLANTED in message and "setraf-mallory" in message and "1777" in message
    assert "SETRAF_RUNTIME_DIR" in message  # how to fix it
    assert result["entries"] == sorted(f"{key}.{s}" for s in ("json", "lock", "log"))
    after = _stat_secret(userns, alice, secret)
    assert after == {"mode": 0o600, "uid": alice.uid, "link": False, "text": SECRET}


@pytest.mark.parametrize("mode", ["0777", "0770", "2777"])
def test_a_runtime_dir_others_can_write_is_refused(
    userns: Namespace, alice: LocalUser, smollm2_path: Path, mode: str
) -> None:
    directory = str(alice.home / "run")
    userns.run(alice, ["mkdir", directory]).check_returncode()
    userns.run(alice, ["chmod", mode, directory]).check_returncode()
    body = """
        try:
            managed.runtime_dir()
            out = None
        except InsecureRuntimeDirError as exc:
            out = str(exc)
    """
    message = userns.python(
        alice, _snippet(smollm2_path, body), env={"SETRAF_RUNTIME_DIR": directory}
    )
    assert message is not None and directory in message
    assert "writable by other users" in message and mode[-3:] in message


def test_a_link_planted_in_a_shared_group_dir_is_not_followed(
    userns: Namespace, alice: LocalUser, mallory: LocalUser, smollm2_path: Path, share_group: str
) -> None:
    """An explicitly shared setgid dir is accepted, but a group member's link to alice's
    file is refused (named), and the file is untouched."""
    shared = "/tmp/shared-run"
    userns.run_root(["mkdir", shared])
    userns.run_root(["chgrp", share_group, shared])
    userns.run_root(["chmod", "2770", shared])
    secret = _write_secret(userns, alice)
    key = _key(userns, mallory, smollm2_path)
    _plant_links(userns, mallory, shared, key, secret)
    body = """
        out = {"dir": str(managed.runtime_dir())}
        try:
            ManagedServer.for_spec(spec).ensure(start_timeout=60)
            out["error"] = None
        except InsecureRuntimeDirError as exc:
            out["error"] = str(exc)
    """
    result = userns.python(alice, _snippet(smollm2_path, body), env={"SETRAF_RUNTIME_DIR": shared})
    assert result["dir"] == shared  # the shared form is accepted...
    assert result["error"] is not None and "symbolic link" in result["error"]  # ...links not
    assert f"{shared}/{key}.lock" in result["error"]
    after = _stat_secret(userns, alice, secret)
    assert after == {"mode": 0o600, "uid": alice.uid, "link": False, "text": SECRET}


def test_a_state_naming_alices_own_process_never_signals_it(
    userns: Namespace, alice: LocalUser, smollm2_path: Path
) -> None:
    """Attack #3: a state file naming one of alice's processes (``sleep 1000``, right pid
    and start time, started_by_package): stop and detach leave it alone; stop says False
    and keeps the state."""
    body = """
        import subprocess
        bystander = subprocess.Popen(["sleep", "1000"])
        try:
            server = ManagedServer.for_spec(spec)
            start = managed.process_start(bystander.pid)
            state = {"version": 1, "key": server.key, "model_path": spec.path,
                     "port": 1000, "launch_id": "x", "server_pid": bystander.pid,
                     "server_start": start, "supervisor_pid": bystander.pid,
                     "supervisor_start": start, "started_by_package": True,
                     "n_parallel": 1, "argv": ["sleep", "1000"],
                     "supervisor_argv": ["sleep", "1000"], "clients": []}
            server.state_path.write_text(json.dumps(state))
            out["stop"] = server.stop()
            out["detach"] = server.detach(stop_if_last=True)
            out["sleep"] = server.sleep()
            time.sleep(0.5)
            out["alive"] = bystander.poll() is None
            out["state_kept"] = json.loads(server.state_path.read_text())["server_pid"] == bystander.pid
            out["running"] = server.is_running()
        finally:
            bystander.kill()
    """
    result = userns.python(alice, _snippet(smollm2_path, body))
    assert result == {
        "stop": False,
        "detach": False,
        "sleep": "not-ours",
        "alive": True,
        "state_kept": True,
        "running": True,
    }


def test_a_held_lock_does_not_block_status(
    userns: Namespace, alice: LocalUser, smollm2_path: Path
) -> None:
    """Attack #14: one process holds a server's lock; ``setraf ps``, the
    listing the app's memory panel uses, ``status()`` and ``is_running()`` answer anyway
    and name the holder."""
    body = """
        import fcntl, subprocess
        server = ManagedServer.for_spec(spec)
        server.lock_path.touch()
        server.state_path.write_text(json.dumps({"version": 1, "key": server.key, "spec": "held",
                             "model_path": spec.path, "port": 9, "launch_id": "held",
                             "server_pid": 999999, "server_start": 1.0, "clients": []}))
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(server.lock_path), "120"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            cli = subprocess.run(
                [sys.executable, "-m", "langchain_setraf.cli", "ps", "--json"],
                capture_output=True, text=True, timeout=60)
            listed = managed.running_servers()
            status = server.status()
            out = {"cli_rc": cli.returncode, "cli": json.loads(cli.stdout or "null"),
                   "listed_busy": [s.busy for s in listed], "status_busy": status.busy,
                   "is_running": server.is_running(), "holder": holder.pid}
        finally:
            holder.kill()
    """
    result = userns.python(alice, _snippet(smollm2_path, body), timeout=90)
    holder = f"pid {result['holder']}"
    assert result["cli_rc"] == 0 and len(result["cli"]) == 1
    assert result["cli"][0]["busy"] is not None and holder in result["cli"][0]["busy"]
    assert "exited" not in result["cli"][0]["busy"]  # the holder lives, named as such
    assert len(result["listed_busy"]) == 1 and holder in result["listed_busy"][0]
    assert result["status_busy"] is not None and holder in result["status_busy"]
    assert result["is_running"] is False


def test_a_held_lock_fails_a_start_naming_the_holder(
    userns: Namespace, alice: LocalUser, smollm2_path: Path
) -> None:
    """A load waits for a held lock only as long as a start could take, then fails with
    an error naming the holder (it no longer waits 945 s)."""
    body = """
        import subprocess
        server = ManagedServer.for_spec(spec)
        server.lock_path.touch()
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(server.lock_path), "300"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            try:
                server.ensure(start_timeout=1)
                out = {"error": None}
            except managed.LockBusyError as exc:
                out = {"error": str(exc), "holder": exc.holder, "pid": holder.pid,
                       "timeout_error": isinstance(exc, TimeoutError)}
        finally:
            holder.kill()
    """
    result = userns.python(alice, _snippet(smollm2_path, body), timeout=200)
    assert result["error"] is not None and result["timeout_error"]
    assert f"pid {result['pid']}" in result["holder"] and result["holder"] in result["error"]


def test_state_and_key_files_are_created_private(
    userns: Namespace, alice: LocalUser, smollm2_path: Path
) -> None:
    """Files the package creates are 0600 whatever the umask, a loose state file of hers
    is tightened, and the state is replaced atomically (no temporary file left behind)."""
    body = """
        os.umask(0)
        server = ManagedServer.for_spec(spec)
        state = {"version": 1, "port": 9, "server_pid": 1, "server_start": 1.0,
                 "launch_id": "u", "clients": [{"pid": 1, "start": 1.0}]}
        server.state_path.write_text(json.dumps(state))  # 0666 under this umask
        inode = server.state_path.stat().st_ino
        server.detach(pid=1)  # locks, reads and rewrites the state
        out = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in server.directory.iterdir()}
        out["replaced"] = server.state_path.stat().st_ino != inode
    """
    result = userns.python(alice, _snippet(smollm2_path, body))
    assert result.pop("replaced") is True
    # the state and the lock, both 0600; no temporary file left behind
    assert sorted(name.rsplit(".", 1)[1] for name in result) == ["json", "lock"], result
    assert all(mode == 0o600 for mode in result.values()), result
