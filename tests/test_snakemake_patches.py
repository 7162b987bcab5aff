"""sensorcharts.snakemake_patches against the pinned Snakemake: what they change is still there, and does
what they expect. When one of these fails after a Snakemake upgrade, see docs/snakemake-scheduler.md."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
import snakemake
from conftest import REPO
from snakemake.io import IOCache, IOFile
from snakemake.scheduling.job_scheduler import JobScheduler

from sensorcharts import snakemake_patches

SCRIPTS = REPO / "workflow" / "scripts"


def test_the_pinned_snakemake_has_what_the_patches_change():
    assert snakemake_patches.missing() == []


def test_min_version_names_the_pinned_snakemake_the_patches_were_tested_with():
    pinned = re.search(r"^\s+- snakemake==(\S+)$", (REPO / "environment.yml").read_text(), re.M)[1]
    min_version = re.search(r'^min_version\("([^"]+)"\)', (REPO / "Snakefile").read_text(), re.M)[1]
    assert pinned == min_version == snakemake.__version__


def scheduler() -> JobScheduler:
    """A JobScheduler with only what _schedule_reevalutation touches: the semaphore that wakes its loop."""
    s = object.__new__(JobScheduler)
    s._open_jobs = threading.Semaphore(0)
    return s


def timers_started(action) -> list[threading.Timer]:
    before = set(threading.enumerate())
    action()
    return [t for t in threading.enumerate() if t not in before and isinstance(t, threading.Timer)]


def test_unpatched_every_call_starts_a_timer_of_its_own():
    """The behaviour the patch replaces: one call per scheduling round, one timer per call."""
    s = scheduler()
    timers = timers_started(lambda: [s._schedule_reevalutation(3600) for _ in range(3)])
    for t in timers:
        t.cancel()
    assert len(timers) == 3 and not any(t.daemon for t in timers)


def test_patched_one_timer_is_pending_at_a_time_and_its_round_arms_the_next(monkeypatch):
    monkeypatch.setattr(JobScheduler, "_schedule_reevalutation", JobScheduler._schedule_reevalutation)  # undone after
    assert snakemake_patches.one_rescheduling_timer()
    s = scheduler()
    (first,) = timers_started(lambda: [s._schedule_reevalutation(3600) for _ in range(3)])
    assert first.daemon  # a run does not wait for it to exit
    first.cancel()
    first.function()  # as if it fired: the scheduler wakes once...
    assert s._open_jobs.acquire(blocking=False) and not s._open_jobs.acquire(blocking=False)
    (second,) = timers_started(lambda: [s._schedule_reevalutation(3600) for _ in range(3)])  # ...and re-arms
    second.cancel()


def test_a_folder_listed_before_a_file_was_written_hides_it_until_forgotten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fingerprints").mkdir()
    workflow = SimpleNamespace(iocache=IOCache(max_wait_time=60))
    fingerprint = IOFile("fingerprints/2025-01-15.txt")
    fingerprint.rule = SimpleNamespace(workflow=workflow)  # all of a rule the listing cache looks at
    asyncio.run(fingerprint.inventory())  # Snakemake lists the folder while it builds the DAG
    (tmp_path / "fingerprints" / "2025-01-15.txt").write_text("written by an input function\n")
    assert asyncio.run(fingerprint.exists_local()) is False  # the listing says missing
    assert snakemake_patches.forget_listing(workflow, "fingerprints")
    assert asyncio.run(fingerprint.exists_local()) is True


def test_forgetting_a_listing_of_a_snakemake_that_keeps_none_does_nothing():
    assert snakemake_patches.forget_listing(SimpleNamespace(), "fingerprints") is False


def test_params_compare_as_before_without_importing_pandas(monkeypatch):
    """Snakemake's comparison of params imports pandas; patched, a run that has not imported pandas compares
    the same values the same way without it, and one that has still recognises pandas objects."""
    probe = (
        "import sys\n"
        "from snakemake.persistence import PersistenceBase as Persistence\n"
        "from sensorcharts import snakemake_patches\n"
        "assert snakemake_patches.params_without_pandas()\n"
        "from types import SimpleNamespace\n"
        "p = SimpleNamespace()\n"
        "p._serialize_param_builtin = lambda v: Persistence._serialize_param_builtin(p, v)\n"
        "values = [{'a': [1, 2.5, 'x']}, 'text', 3, None, ('t', 1)]\n"
        "print([Persistence._serialize_param_pandas(p, v) for v in values], 'pandas' in sys.modules)\n"
    )
    env = {"PYTHONPATH": str(SCRIPTS), "PATH": os.environ["PATH"]}
    patched = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    plain = subprocess.run([sys.executable, "-c", probe.replace("assert snakemake_patches.params_without_pandas()",
                                                                  "pass")],
                           capture_output=True, text=True, env=env, check=True)
    assert patched.stdout.rsplit(" ", 1)[0] == plain.stdout.rsplit(" ", 1)[0]  # the same serialisations
    assert patched.stdout.split()[-1] == "False" and plain.stdout.split()[-1] == "True"  # pandas left out
    import pandas as pd
    from snakemake.persistence import PersistenceBase as Persistence

    monkeypatch.setattr(Persistence, "_serialize_param_pandas", Persistence._serialize_param_pandas)
    assert snakemake_patches.params_without_pandas()
    p = SimpleNamespace()
    p._serialize_param_builtin = lambda v: Persistence._serialize_param_builtin(p, v)
    series = pd.Series([1, 2])
    assert Persistence._serialize_param_pandas(p, series) == repr(pd.util.hash_pandas_object(series).tolist())


def test_an_input_is_hashed_once_while_it_stays_the_same_file(tmp_path, monkeypatch):
    """Patched, an unchanged file is read once however often Snakemake asks; a file written again (even
    with its modification time set back, as ``cp -p`` does) is read again; forced hashing always reads."""
    from snakemake.io import _IOFile

    monkeypatch.setattr(_IOFile, "checksum", _IOFile.checksum)  # undone after
    reads = []
    file_digest = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda f, *a: reads.append(f.name) or file_digest(f, *a))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "chart.png"
    path.write_bytes(b"first bytes")
    chart = IOFile("chart.png")
    chart.rule = SimpleNamespace(workflow=SimpleNamespace(iocache=IOCache(max_wait_time=60)))
    chart.rule.workflow.iocache.deactivate()  # as while jobs run

    def checksum(**kw):
        return asyncio.run(chart.checksum(1_000_000, **kw))

    def sha(data: bytes) -> str:
        return f"sha256:{hashlib.sha256(data).hexdigest()}"

    assert checksum() == sha(b"first bytes") and len(reads) == 1
    assert snakemake_patches.input_checksums_once()
    assert [checksum() for _ in range(3)] == [sha(b"first bytes")] * 3
    assert len(reads) == 2  # unpatched one read a call; patched one for all three
    assert checksum(force=True) == sha(b"first bytes") and len(reads) == 3
    stat = path.stat()
    path.write_bytes(b"other bytes")  # same size, modification time set back
    while path.stat().st_ctime_ns == stat.st_ctime_ns:  # in the clock tick of the first write: not yet told apart
        path.write_bytes(b"other bytes")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert checksum() == sha(b"other bytes") and len(reads) == 4
    path.write_bytes(b"longer bytes!")
    assert checksum() == sha(b"longer bytes!") and checksum() == sha(b"longer bytes!") and len(reads) == 5
    assert asyncio.run(chart.checksum(4)) is None  # over the size limit, as Snakemake answers


@pytest.mark.parametrize("name", ["JobScheduler._schedule_reevalutation", "IOCache.exists_local.has_inventory",
                                  "PersistenceBase._serialize_param_pandas", "_IOFile.checksum", "Workflow.execute"])
def test_missing_names_what_a_snakemake_without_it_lacks(monkeypatch, name):
    if name == "Workflow.execute":
        from snakemake.workflow import Workflow

        assert snakemake_patches.after_every_run(object.__new__(Workflow), print)  # patched while it has one
        monkeypatch.delattr(Workflow, "execute")
        assert snakemake_patches.after_every_run(object.__new__(Workflow), print) is False
    elif name == "_IOFile.checksum":
        from snakemake.io import _IOFile

        monkeypatch.delattr(_IOFile, "checksum")
        assert snakemake_patches.input_checksums_once() is False
    elif name.startswith("JobScheduler"):
        monkeypatch.delattr(JobScheduler, "_schedule_reevalutation")
        assert snakemake_patches.one_rescheduling_timer() is False  # left as it is
    elif name.startswith("PersistenceBase"):
        from snakemake.persistence import PersistenceBase as Persistence

        monkeypatch.delattr(Persistence, "_serialize_param_pandas")
        assert snakemake_patches.params_without_pandas() is False
    else:
        monkeypatch.setattr(IOCache, "exists_local", property(lambda self: {}))
    assert len(snakemake_patches.missing()) == 1


def ended_runs(outcome, dry=False, main=True, no_hooks=False, callback=None) -> list[bool]:
    """What ``after_every_run`` calls back with around one ``execute`` of a stand-in Snakemake Workflow (only
    what the wrapper reads) that returns ``outcome``, or raises it when it is an exception."""
    called: list[bool] = []

    def execute(executor_plugin, **settings):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    workflow = SimpleNamespace(execute=execute, is_main_process=main,
                               execution_settings=SimpleNamespace(no_hooks=no_hooks))
    assert snakemake_patches.after_every_run(workflow, callback or called.append)
    plugin = SimpleNamespace(common_settings=SimpleNamespace(dryrun_exec=dry))
    try:
        assert workflow.execute(executor_plugin=plugin, scheduler_plugin=None) is outcome
    except RuntimeError as exc:
        assert exc is outcome  # the run's own failure, unchanged
    return called


def test_after_every_run_calls_back_after_each_real_run_with_whether_it_succeeded(capsys):
    assert ended_runs(None) == [True]  # nothing to be done, or jobs that all succeeded
    assert ended_runs(False) == [False]  # files it was told to wait for never came
    assert ended_runs(RuntimeError("a job failed")) == [False]
    assert ended_runs(None, dry=True) == []
    assert ended_runs(RuntimeError("failed before the executor was stored"), dry=True) == []
    assert ended_runs(None, main=False) == []  # a cluster job's Snakemake
    assert ended_runs(None, no_hooks=True) == []
    assert capsys.readouterr().err == ""


def test_a_failing_after_run_callback_is_one_line_and_leaves_the_run_as_it_was(capsys):
    def fails(succeeded):
        raise OSError("disk full")

    assert ended_runs(None, callback=fails) == []
    assert ended_runs(RuntimeError("a job failed"), callback=fails) == []
    assert capsys.readouterr().err.splitlines() == ["sensor-charts: after the run: OSError('disk full')"] * 2
