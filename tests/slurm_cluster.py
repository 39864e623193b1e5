"""A real one-node SLURM cluster on this machine, for tests/test_slurm.py.

Starts munged, slurmctld and slurmd (Debian's munge and slurm-wlm packages) in the
foreground as child processes, with the configuration kept in ``tests/slurm/slurm.conf.in``,
and stops every one of them afterwards. State, logs, the munge key and socket live in a
fresh directory under /tmp. The configuration itself is written to ``/etc/slurm/slurm.conf``
and removed again: Slurm's client commands find it there, and the executor plugin's job
step removes every ``SLURM_*`` variable (``SLURM_CONF`` included) before it calls ``srun``
inside a job, so a configuration anywhere else is lost there.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CONF_TEMPLATE = Path(__file__).resolve().parent / "slurm" / "slurm.conf.in"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by vaeflow's tests/slurm_cluster.py for a test; removed when the test ends\n"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "srun", "scontrol", "sinfo", "scancel")
INSTALL = "apt-get install -y slurm-wlm munge (as .ci/run does)"


def unavailable() -> str | None:
    """Why a test cluster cannot start here (None when it can)."""
    if os.geteuid() != 0:
        return f"starting slurmd and writing {SYSTEM_CONF} needs root; this is {getpass.getuser()}"
    missing = [
        name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None and not Path("/usr/sbin", name).exists()
    ]
    if missing:
        return f"SLURM or munge is not installed (missing {', '.join(missing)}): {INSTALL}"
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.read_text().startswith(MARKER):
        return f"{SYSTEM_CONF} belongs to a real SLURM installation on this machine; not overwriting it"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _available_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def configuration(state: Path, munge_socket: Path, cpus: int, memory_mb: int) -> str:
    """``tests/slurm/slurm.conf.in`` filled in for this machine."""
    host = socket.gethostname().split(".")[0]
    text = CONF_TEMPLATE.read_text().format(
        host=host,
        ctld_port=_free_port(),
        slurmd_port=_free_port(),
        user=getpass.getuser(),
        munge_socket=munge_socket,
        state=state,
        cpus=cpus,
        memory_mb=memory_mb,
    )
    return MARKER + text


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"({path} was not written)"
    return f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    state: Path  # logs, spool, munge key and socket
    pids: dict[str, int] = field(default_factory=dict)  # each daemon started, by name


@contextlib.contextmanager
def one_node_cluster(cpus: int, memory_mb: int | None = None, timeout: float = 60.0) -> Iterator[Cluster]:
    """Run munged, slurmctld and slurmd for one node with ``cpus`` CPUs; yields the :class:`Cluster`.

    Every daemon is a child process of this one and is stopped (SIGTERM, then SIGKILL) on exit,
    after cancelling whatever jobs are still queued; the configuration and the state go too.
    """
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    state = Path(tempfile.mkdtemp(prefix="vaeflow-slurm-"))
    state.chmod(0o755)  # munged wants every directory above its socket searchable by all
    (key_dir := state / "munge").mkdir(mode=0o700)
    (run := state / "run").mkdir(mode=0o755)
    for sub in ("ctld", "slurmd"):
        (state / sub).mkdir()
    key = key_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = run / "munge.socket"
    memory_mb = memory_mb or max(1024, int(_available_memory_mb() * 0.8))
    processes: list[subprocess.Popen] = []
    cluster = Cluster(state)

    def start(name: str, *args: str) -> None:
        with open(state / f"{name}.out", "wb") as log:
            processes.append(
                subprocess.Popen([_binary(name), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        cluster.pids[name] = processes[-1].pid

    try:
        start(
            "munged",
            "--foreground",
            f"--key-file={key}",
            f"--socket={munge_socket}",
            f"--pid-file={run / 'munged.pid'}",
            f"--log-file={state / 'munged.log'}",
            f"--seed-file={key_dir / 'munged.seed'}",
        )
        _wait(lambda: munge_socket.exists(), timeout, "munged to open its socket", state)
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.write_text(configuration(state, munge_socket, cpus, memory_mb))
        start("slurmctld", "-D", "-f", str(SYSTEM_CONF))
        start("slurmd", "-D", "-f", str(SYSTEM_CONF))
        _wait(lambda: _node_idle(), timeout, "the node to come up idle", state)
        yield cluster
    finally:
        if SYSTEM_CONF.exists() and any(p.poll() is None for p in processes):
            subprocess.run([_binary("scancel"), "--user", getpass.getuser()], capture_output=True, timeout=30)
        for proc in reversed(processes):  # slurmd, slurmctld, then munged
            _stop(proc)
        if SYSTEM_CONF.exists() and SYSTEM_CONF.read_text().startswith(MARKER):
            SYSTEM_CONF.unlink()
        shutil.rmtree(state, ignore_errors=True)


def _node_idle() -> bool:
    proc = subprocess.run([_binary("sinfo"), "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and proc.stdout.strip() == "idle"


def _wait(ready, timeout: float, what: str, state: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(_tail(state / f"{name}{suffix}") for name in DAEMONS for suffix in (".out", ".log"))
            raise RuntimeError(f"SLURM test cluster: timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
