"""``pytest -m "not root"`` is safe: run as an unprivileged user, it passes and touches no
cgroup, no ``/dev/kmsg`` and no Docker.

The suite runs in a subprocess as ``nobody`` (uid 65534), on a copy of the repository it
owns, in a private mount namespace where ``/sys/fs/cgroup``, ``/dev/kmsg`` and the Docker
socket are replaced by mode-0 stand-ins: a test that reaches for one fails (nobody may not
even look inside), and ``strace`` records every path the run names, so a test that catches
the error and passes anyway is still caught. The Python the venv points to may sit below a
directory nobody cannot enter (``/root/.pyenv``): it is bound into the namespace where
nobody can reach it, and nothing else of that directory is.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INNER = "SENTINEL_MARKERS_INNER"
NOBODY = 65534
GUARDED = ("/sys/fs/cgroup", "/dev/kmsg", "/run/docker.sock", "/var/run/docker.sock")
SKIP_COPY = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".import_linter_cache",
    "*.egg-info",
)
FILE_CALLS = (
    "open,openat,openat2,creat,stat,lstat,newfstatat,statx,statfs,access,faccessat,"
    "faccessat2,readlink,readlinkat,execve,chdir,mkdir,mkdirat,unlink,unlinkat,rmdir,"
    "rename,renameat,renameat2,connect,inotify_add_watch"
)

pytestmark = [
    pytest.mark.root,  # switching user and mounting need root
    pytest.mark.skipif(INNER in os.environ, reason="inside the unprivileged run already"),
]


def _hidden(path: Path) -> Path | None:
    """The highest of ``path`` and the directories above it that others may not enter."""
    for part in [*reversed(path.parents), path]:
        if part != Path("/") and not part.stat().st_mode & 0o001:
            return part
    return None


def _expose(targets: list[Path], stage_dir: Path) -> list[str]:
    """Shell lines (root, in the private mount namespace) that let nobody reach each of
    ``targets``: any that sits under (or is) a directory others may not enter (pyenv's
    Python under /root; a checkout cloned into ``mktemp -d``, 0700, with its venv) is bound
    aside, the hidden directory is masked with an open tmpfs, and the target is bound back
    at its own path: whole, or entry by entry when its own mode keeps others out."""
    q = shlex.quote
    # a target inside another comes with it (the checkout's own venv)
    wanted = [t for t in dict.fromkeys(targets) if not any(o in t.parents for o in targets)]
    hidden = {t: h for t in wanted if (h := _hidden(t)) is not None}
    lines: list[str] = []
    stages: dict[Path, Path] = {}
    for i, target in enumerate(hidden):
        stage = stage_dir / f"expose-{i}"
        stage.mkdir()
        stages[target] = stage
        lines.append(f"mount --bind {q(str(target))} {q(str(stage))}")
    masked: list[Path] = []
    for h in sorted(set(hidden.values()), key=lambda p: len(p.parts)):
        if not any(h == m or m in h.parents for m in masked):  # an outer mask hides it too
            lines.append(f"mount -t tmpfs -o mode=0755,size=64k sentinel-mask {q(str(h))}")
            masked.append(h)
    for target, stage in stages.items():
        lines.append(f"mkdir -p {q(str(target))}")
        if target.stat().st_mode & 0o001:
            lines.append(f"mount --bind {q(str(stage))} {q(str(target))}")
            continue
        for entry in sorted(target.iterdir()):
            there = q(str(target / entry.name))
            if entry.is_symlink():
                lines.append(f"ln -s {q(os.readlink(entry))} {there}")
                continue
            lines.append(f"mkdir {there}" if entry.is_dir() else f"touch {there}")
            lines.append(f"mount --bind {q(str(stage / entry.name))} {there}")
    return lines


def _setup_script(work: Path, log: Path, argv: list[str]) -> str:
    """Shell run as root inside ``unshare --mount``: mask, expose Python, drop to nobody."""
    q = shlex.quote
    lines = ["set -e"]
    # the interpreter, and the checkout whose venv runs the tests (editable: its sources)
    lines += _expose(
        [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), REPO], work.parent
    )
    blank = work.parent / "blank"  # root's: nobody cannot chmod it
    blank.touch(mode=0)
    blank.chmod(0)
    lines.append("mount -t tmpfs -o mode=0000,size=4k sentinel-mask /sys/fs/cgroup")
    for path in ("/dev/kmsg", "/run/docker.sock"):
        if os.path.lexists(path):
            lines.append(f"mount --bind {q(str(blank))} {path}")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        INNER: "1",
    }
    if "PYTEST_ADDOPTS" in os.environ:  # the outer run's options (``-p no:...``) hold inside
        env["PYTEST_ADDOPTS"] = os.environ["PYTEST_ADDOPTS"]
    as_nobody = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
        *argv,
    ]
    strace = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", f"trace={FILE_CALLS}"]
    lines.append(shlex.join([*strace, "-e", "signal=none", "-o", str(log), *as_nobody]))
    return "\n".join(lines) + "\n"


# Runtimes read their CPU quota at start (Go's, in helm for the chart tests; some Python
# libraries too) and go on without it when they may not: not a test touching cgroups.
# sentinel reads no cpu controller, so this exception hides nothing of its own.
CPU_PROBE = re.compile(r'"/sys/fs/cgroup/cpu(,cpuacct)?/+(cpu\.(cfs_quota_us|cfs_period_us|max))?"')


def _touches(log: Path) -> list[str]:
    """The calls naming a guarded path, each with the program that made it."""
    pattern = re.compile("|".join(re.escape(f'"{p}') for p in GUARDED))
    programs: dict[str, str] = {}
    found = []
    with log.open(errors="replace") as f:
        for line in f:
            pid, _, call = line.partition(" ")
            call = call.lstrip()
            if call.startswith("execve(") and "= 0" in call:
                programs[pid] = call.split('"', 2)[1]
            if pattern.search(call) and not CPU_PROBE.search(call):
                found.append(f"{programs.get(pid, '?')}: {call.rstrip()}")
    return found


@pytest.mark.timeout(900)
def test_not_root_runs_as_nobody_and_touches_no_cgroup_kmsg_or_docker() -> None:
    for tool in ("unshare", "setpriv", "strace", "mount"):
        if shutil.which(tool) is None:
            pytest.fail(f"this test needs {tool}")
    # Not tmp_path: pytest's base directory is root's alone (0700), nobody must get in.
    base = Path(tempfile.mkdtemp(prefix="sentinel-markers-"))
    try:
        base.chmod(0o755)
        _run_as_nobody(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_as_nobody(base: Path) -> None:
    work = base / "work"  # nobody's
    work.mkdir()
    repo = work / "repo"
    shutil.copytree(REPO, repo, ignore=SKIP_COPY, symlinks=True)
    (work / "home").mkdir()
    (work / "tmp").mkdir()
    log = base / "strace.log"  # root's
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "not root",
        "-q",
        "-rfE",
        "-p",
        "no:cacheprovider",
    ]
    script = _setup_script(work, log, argv)
    for path in [work, *work.rglob("*")]:
        if not path.is_symlink():
            os.chown(path, NOBODY, NOBODY)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    out = result.stdout
    summary = out[out.rfind("short test summary info") :] if "short test summary" in out else out
    report = f"exit {result.returncode}\n{summary[-6000:]}\n{result.stderr[-2000:]}"
    touches = _touches(log)
    assert not touches, "not-root tests reached for root-only things:\n" + "\n".join(touches[:40])
    last = out.strip().splitlines()[-1] if out.strip() else ""
    assert result.returncode == 0, f"`pytest -m 'not root'` as nobody failed: {report}"
    assert re.search(r"\d+ passed", last), report
    assert not re.search(r"\d+ (failed|errors?)\b", last), report
