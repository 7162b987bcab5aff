"""The five places where the workflow reaches into Snakemake's internals, kept together.

All were written against Snakemake 9.27.1, the version ``environment.yml`` pins and the Snakefile's
``min_version`` names. ``tests/test_snakemake_patches.py`` fails as soon as the pinned Snakemake no longer
has what they rely on (see :func:`missing`); at run time another Snakemake is left as it is.

* :func:`one_rescheduling_timer`: Snakemake's job scheduler arms a one-second timer after every scheduling
  round while jobs wait, and every timer's round arms another, so every finished job starts a chain of
  timers that lasts as long as jobs wait: rounds grow with the square of the jobs. One pending timer is
  enough. docs/snakemake-scheduler.md describes the problem, the fix and its measurement.
* :func:`forget_listing`: while it builds the DAG, Snakemake lists each folder once and from then on takes
  a file that was not listed for missing. The workflow writes fingerprint files during the DAG (from an
  input function), so it tells Snakemake to list their folder again.
* :func:`params_without_pandas`: to tell whether a job's params changed, Snakemake imports pandas (about
  0.7 s of CPU, a sixth of a cron run that has nothing to do) in case a param is a pandas object. None can
  be while pandas is not imported, so params are then compared as the builtin values they are.
* :func:`input_checksums_once`: after each job Snakemake records, in each output's metadata, the checksums of
  all the job's inputs, hashing every input again for every output (snakemake/snakemake#4240): the report
  job's ~2,500 inputs four times, at the end of a backfill, while the other core waits. A file is hashed
  once while it stays the same file.
* :func:`after_every_run`: Snakemake's ``onsuccess`` and ``onerror`` hooks run only in runs with jobs; a
  run that finds nothing to do (most cron runs while no readings arrive) returns before them. What must
  follow every run (the heartbeat that alerting watches, pruning old run logs) is called from around
  ``Workflow.execute`` instead.

Imported by the workflow only (``workflow/rules/common.smk``), never by a job: Snakemake is imported lazily.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading

# Set on a scheduler while its one re-scheduling timer is pending.
_PENDING = "_sensorcharts_timer_pending"


def missing() -> list[str]:
    """What the patches rely on that the installed Snakemake lacks, one line each; empty when all is there."""
    problems = []
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError as exc:
        problems.append(f"snakemake.scheduling.job_scheduler.JobScheduler cannot be imported ({exc})")
    else:
        if not callable(getattr(JobScheduler, "_schedule_reevalutation", None)):
            problems.append("JobScheduler has no method _schedule_reevalutation(delay)")
    try:
        from snakemake.io import IOCache
    except ImportError as exc:
        problems.append(f"snakemake.io.IOCache cannot be imported ({exc})")
    else:
        if not isinstance(getattr(IOCache(0).exists_local, "has_inventory", None), set):
            problems.append("IOCache().exists_local has no set has_inventory (the folders listed)")
    try:
        from snakemake.persistence import PersistenceBase as Persistence
    except ImportError as exc:
        problems.append(f"snakemake.persistence.PersistenceBase cannot be imported ({exc})")
    else:
        for method in ("_serialize_param_pandas", "_serialize_param_builtin"):
            if not callable(getattr(Persistence, method, None)):
                problems.append(f"PersistenceBase has no method {method}(value)")
    try:
        from snakemake.io import _IOFile
    except ImportError as exc:
        problems.append(f"snakemake.io._IOFile cannot be imported ({exc})")
    else:
        if not inspect.iscoroutinefunction(getattr(_IOFile, "checksum", None)):
            problems.append("_IOFile has no coroutine method checksum(threshold, force, algorithm)")
    try:
        import snakemake.api  # noqa: F401  (imported first, as Snakemake does: alone, snakemake.workflow is a cycle)
        from snakemake.workflow import Workflow
    except ImportError as exc:
        problems.append(f"snakemake.workflow.Workflow cannot be imported ({exc})")
    else:
        if "executor_plugin" not in inspect.signature(getattr(Workflow, "execute", lambda: None)).parameters:
            problems.append("Workflow has no method execute(executor_plugin, ...)")
        if not hasattr(Workflow, "is_main_process"):
            problems.append("Workflow has no is_main_process")
    try:
        from snakemake.settings.types import ExecutionSettings
    except ImportError as exc:
        problems.append(f"snakemake.settings.types.ExecutionSettings cannot be imported ({exc})")
    else:
        if "no_hooks" not in getattr(ExecutionSettings, "__dataclass_fields__", {}):
            problems.append("ExecutionSettings has no field no_hooks")
    return problems


def one_rescheduling_timer() -> bool:
    """Keep at most one pending re-scheduling timer per job scheduler, as a daemon thread.

    Snakemake (9.x; job-rate limit 100 jobs a second by default) calls ``_schedule_reevalutation(1)`` at the
    end of every scheduling round of a real run, and each call starts a ``threading.Timer`` whose round
    calls it again. A pending timer wakes the scheduler just as well as many: the round it starts arms the
    next. Snakemake's timers are non-daemon threads, so a run also waited up to a second after its last job
    to exit; these are daemons. Returns whether the scheduler was patched (False for a Snakemake without
    the method, which is left as it is).
    """
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    if not callable(getattr(JobScheduler, "_schedule_reevalutation", None)):
        return False

    def schedule_reevaluation(self, delay) -> None:
        if getattr(self, _PENDING, False):
            return
        setattr(self, _PENDING, True)

        def fire() -> None:
            setattr(self, _PENDING, False)  # before waking it, so that the round it starts arms the next
            self._open_jobs.release()

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        timer.start()

    JobScheduler._schedule_reevalutation = schedule_reevaluation
    return True


def forget_listing(workflow, folder: str) -> bool:
    """Make ``workflow``'s Snakemake list ``folder`` again before it decides that a file there is missing.

    Snakemake keeps the folders it has listed in ``workflow.iocache.exists_local.has_inventory`` and takes
    a file of such a folder that the listing did not show for missing. Returns whether there was such a
    record to clear (False for a Snakemake that keeps none).
    """
    listed = getattr(getattr(getattr(workflow, "iocache", None), "exists_local", None), "has_inventory", None)
    if not isinstance(listed, set):
        return False
    listed.discard(folder)
    return True


def params_without_pandas() -> bool:
    """Compare params without importing pandas while nothing else has imported it.

    Snakemake 9 serialises each param of each job to see whether it changed since the last run, through
    ``Persistence._serialize_param_pandas`` when pandas is installed, which imports pandas to check whether
    the value is a DataFrame, Series or Index. An object of a module that was never imported cannot exist,
    so until pandas is in ``sys.modules`` the builtin serialisation gives the same answer. Returns whether
    Snakemake was patched.
    """
    try:
        from snakemake.persistence import PersistenceBase as Persistence
    except ImportError:
        return False
    original = getattr(Persistence, "_serialize_param_pandas", None)
    if not callable(original) or not callable(getattr(Persistence, "_serialize_param_builtin", None)):
        return False

    def serialize_param(self, value):
        if "pandas" in sys.modules:
            return original(self, value)
        return self._serialize_param_builtin(value)

    Persistence._serialize_param_pandas = serialize_param
    return True


def input_checksums_once() -> bool:
    """Keep each file's checksum while it is the same file: device, inode, size, modification and change
    time unchanged. Every write sets the change time, which no one can set back (``touch`` and ``cp -p``
    set the modification time only), so a file written again later is hashed again; a write in the same
    clock tick (milliseconds) as the hashing goes unseen, as it does by Snakemake's own modification-time
    checks. Only Snakemake's own calls are kept (no forced hashing, no other algorithm, local files); the
    rest goes to Snakemake as before. Returns whether Snakemake was patched.
    """
    try:
        from snakemake.io import _IOFile
    except ImportError:
        return False
    original = getattr(_IOFile, "checksum", None)
    if not inspect.iscoroutinefunction(original):
        return False
    known: dict[tuple, str | None] = {}

    def identity(path: str) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    async def checksum(self, threshold=None, force=False, algorithm=None):
        if force or algorithm is not None or threshold is None or self.is_storage:
            return await original(self, threshold, force, algorithm)
        before = identity(self.file)
        key = (self.file, threshold, before)
        if before is not None and key in known:
            return known[key]
        value = await original(self, threshold, force, algorithm)
        if before is not None and identity(self.file) == before:  # not changed while it was read
            known[key] = value
        return value

    _IOFile.checksum = checksum
    return True


def after_every_run(workflow, callback) -> bool:
    """Call ``callback(succeeded)`` once ``workflow``'s run has ended, in Snakemake's main process and not in a
    dry-run or with ``--no-hooks``: after runs with jobs and after runs that had nothing to do alike.

    Snakemake (9.x) returns from ``Workflow.execute`` before its hooks when nothing is to be done, returns
    False when files it was told to wait for never came, raises when a job failed, and otherwise returns
    None after ``onsuccess``. Whether the run is a dry-run comes from the executor ``execute`` is given. A
    callback that fails, or a Snakemake without what this reads, prints one line on stderr and changes
    nothing about the run. Returns whether the workflow was patched.
    """
    execute = getattr(workflow, "execute", None)
    if not callable(execute):
        return False

    def execute_then_call_back(*args, **kwargs):
        succeeded = False
        try:
            result = execute(*args, **kwargs)
            succeeded = result is not False
            return result
        finally:
            try:
                # The dry-run flag of the call itself: workflow.dryrun reads False until execute has stored
                # the executor, so a dry-run that failed before that would look real.
                plugin = kwargs.get("executor_plugin", args[0] if args else None)
                real = plugin is not None and not plugin.common_settings.dryrun_exec
                if real and workflow.is_main_process and not workflow.execution_settings.no_hooks:
                    callback(succeeded)
            except Exception as exc:  # noqa: BLE001  (the run's own outcome stands)
                print(f"sensor-charts: after the run: {exc!r}", file=sys.stderr)

    workflow.execute = execute_then_call_back
    return True
