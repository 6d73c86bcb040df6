"""Issue 20, item 6: after ``kill -9`` of a study during scoring, its ANTs children die and
its temporary image files are gone after the next run; provenance says ``interrupted``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; zombies count as dead)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _config(tmp_path, cohort) -> Path:
    import tomli_w

    config = {
        "archs": ["unet"],
        "study": {"device": "cpu", "threads": 2, "seed": 0},  # 2 workers: ANTs in children
        "cohort": {"path": str(cohort)},
        "folds": {"n_folds": 2, "run_folds": [0]},
        "preprocess": {"shape": [32, 32, 32], "divisible_by": 4, "bias_correction": False},
        "target": {"depth": 2, "base_filters": 4, "epochs": 1, "batch_size": 1, "lr": 0.01},
        "inversion": {"epochs": 4, "batch_size": 1, "lr": 0.01},  # reconstructions not constant
        "matching": {"metrics": ["ssim", "deformation"], "top_k": 1, "deformation_preset": "fast"},
    }
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.mark.slow
def test_kill_during_scoring_leaves_no_children_and_no_scratch(tiny_cohort, tmp_path):
    from inversion_audit.cli.main import main
    from inversion_audit.study.provenance import read_provenance

    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])  # the test's own cache (conftest)
    config, out = _config(tmp_path, tiny_cohort), tmp_path / "study"
    code = "from inversion_audit.cli.main import main; main(['run', %r, '--out', %r, '--quiet'])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code % (str(config), str(out))],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, ants = time.monotonic() + 240, []
        while not ants and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            ants = [c for c in _children(proc.pid) if "_ants_subprocess" in _cmdline(c)]
        assert ants, "the study never reached the ANTs registrations of its scoring"
        time.sleep(1.0)  # the registrations are under way
        descendants = _children(proc.pid)
        scratch = [p for p in (cache / "tmp").iterdir() if f"-{proc.pid}-" in p.name]
        assert scratch, "the parent's scratch folder holding the pair's images is not there"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in descendants) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for c in descendants if _alive(c)], "children outlived the killed study"
    finally:
        if proc.poll() is None:
            proc.kill()
    # the killed invocation never ended: it reads as interrupted, not running
    record = read_provenance(out / "provenance.json")
    assert record["invocations"][-1]["status"] == "interrupted"
    # the next run cleans the temporary image files of the killed one, then finishes
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    left = [p for p in (cache / "tmp").iterdir() if p.name.split("-")[1] == str(proc.pid)]
    assert left == [] and not any(p.exists() for p in scratch)
    statuses = [
        inv["status"] for inv in json.loads((out / "provenance.json").read_text())["invocations"]
    ]
    assert statuses == ["interrupted", "finished"]


def test_a_child_dies_with_its_killed_parent_even_while_it_holds_the_gil(tmp_path):
    """The mechanism alone: a parent starts a child that calls ``die_with_parent`` and then
    holds the GIL in native code, as ANTs does; ``kill -9`` of the parent ends it within 10 s."""
    ready = str(tmp_path / "ready")
    # a catastrophic regular expression: runs in C for ever without releasing the GIL, so
    # only the kernel (PR_SET_PDEATHSIG), not the watchdog thread, can end this child
    child = (
        "from inversion_audit.children import die_with_parent; die_with_parent(); "
        f"import re; open({ready!r}, 'w').close(); re.match(r'(a+)+$', 'a' * 64 + 'b')"
    )
    parent = (
        "import subprocess, sys, time\n"
        "from inversion_audit.children import child_env\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=child_env())\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        kid = int(proc.stdout.readline())
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(kid) and (tmp_path / "ready").exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(kid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(kid)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_scratch_of_dead_processes_is_cleaned_and_live_ones_kept(tmp_path):
    from inversion_audit.children import scratch_dir, scratch_root

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = scratch_root()
    stale = root / f"ants-{dead.pid}-abc"
    live = root / f"ants-{os.getppid()}-abc"
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "in.npz").write_bytes(b"patient image")
    with scratch_dir("ants") as tmp:
        assert tmp.parent == root and f"-{os.getpid()}-" in tmp.name
        assert not stale.exists() and (live / "in.npz").exists()
    assert not tmp.exists()


def test_provenance_of_a_killed_invocation_reads_interrupted(tmp_path):
    from inversion_audit.io import atomic_write_json
    from inversion_audit.study.provenance import Provenance, read_provenance

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = Provenance({}, "cpu")
    killed.invocation["pid"] = dead.pid  # as if that process had written it, then been killed
    atomic_write_json(tmp_path / "provenance.json", killed.data)
    assert (
        read_provenance(tmp_path / "provenance.json")["invocations"][0]["status"] == "interrupted"
    )
    now = Provenance({}, "cpu")
    now.merge_previous(json.loads((tmp_path / "provenance.json").read_text()))
    assert [i["status"] for i in now.data["invocations"]] == ["interrupted", "running"]
