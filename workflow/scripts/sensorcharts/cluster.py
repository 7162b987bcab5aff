"""What a run on a Slurm cluster needs beyond Snakemake and its Slurm executor plugin (docs/cluster.md).

common.smk calls ``prepare(workflow)`` while the Snakefile is read, in every Snakemake process:

* In the submitting Snakemake, the Slurm plugin (2.8) is adapted (``adapt_slurm_plugin``): a cluster job's
  script runs the job's rules itself, in threads (as a local run does), instead of starting one job step
  and one more Snakemake per rule; and its status checks end (a job whose state cannot be told fails
  within minutes, with the reason, instead of being waited for forever).
* In a cluster job's Snakemake (``--mode remote``), the warm job server (warm.py) that its rules start gets a
  runtime folder of this process's own: a fresh mode-0700 folder exported as ``XDG_RUNTIME_DIR``. The
  server then lives inside the job's allocation, serves only this job's rules, and is stopped when this
  Snakemake exits (``atexit``; with ``proctrack/cgroup`` Slurm would kill it anyway, with
  ``proctrack/linuxproc`` it would outlive the job). An ``XDG_RUNTIME_DIR`` exported from the submitting
  host, which may not exist on the node, is not used. Last, it leaves an empty file named after its Slurm
  job id in the run's folder under ``ENDED`` (on the shared filesystem), which tells the submitting Snakemake
  to ask Slurm now.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A job whose state Slurm cannot report for this long (the status command fails, or no longer lists it) is
# reported failed, so that the run ends with a reason instead of waiting forever.
STATUS_UNKNOWN_LIMIT_S = float(os.environ.get("SENSORCHARTS_STATUS_UNKNOWN_LIMIT_S", 300))
# The plugin backs off by 10 s after every status check that finds nothing finished (up to 180 s), so a
# long cluster job's end could go unnoticed for minutes; checks are never further apart than this.
STATUS_INTERVAL_MAX_S = 15
# How long the status command may take when it is tried once before the first submission.
STATUS_PROBE_TIMEOUT_S = 60
# Where a cluster job's Snakemake says it has ended: ENDED/<run>/<job id>, the run being the plugin's run id,
# which is every job's Slurm job name (relative to the working directory, which the submitting host and the
# nodes share). The submitting Snakemake lists its run's folder every ENDED_LOOK_S and asks Slurm when a job
# of its own is named: STATUS_QUERY_MIN_S after the last query, and twice as long after each such query
# that still found a named job running (Slurm may list it as completing, sacct may lag), up to
# STATUS_INTERVAL_MAX_S, the most it waits in any case.
ENDED = Path(".snakemake/sensorcharts-slurm-ended")
ENDED_LOOK_S = 1
STATUS_QUERY_MIN_S = 2
ENDED_KEPT_S = 86_400  # run folders older than this (a run that was killed) are removed by the next run


def prepare(workflow) -> None:
    """Set up what this Snakemake process of a cluster run needs (see the module's docstring); nothing
    else happens in a local run."""
    if workflow.remote_exec:
        array = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job_id = "_".join(array) if all(array) else os.environ.get("SLURM_JOB_ID")  # as the plugin names it
        run = os.environ.get("SLURM_JOB_NAME")
        # Only the job's own Snakemake says so: one a job step runs (srun) inherits the variable and ends earlier.
        if job_id and run and not os.environ.get("SENSORCHARTS_SAYS_ENDED"):
            os.environ["SENSORCHARTS_SAYS_ENDED"] = job_id
            atexit.register(say_ended, run, job_id)  # registered first, so it runs after the server is stopped
        private_runtime_folder()
    elif workflow.is_main_process:
        adapt_slurm_plugin()


# ---------------------------------------------------------------------------------------------------------
# Inside a cluster job
# ---------------------------------------------------------------------------------------------------------


def private_runtime_folder() -> str:
    """Export a fresh private ``XDG_RUNTIME_DIR`` for this process and stop, when it exits, whatever was
    started with it (the warm job server, by the socket path on its command line); return the folder."""
    base = tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):  # Unix socket paths are limited to ~100 bytes
        base = "/tmp"
    folder = tempfile.mkdtemp(prefix="sensorcharts-job-", dir=base)  # mode 0700, a name nobody else has
    os.environ["XDG_RUNTIME_DIR"] = folder
    atexit.register(stop_processes_under, folder, remove=True)
    print(f"sensor-charts: runtime folder of this cluster job's Snakemake (its warm job server): {folder}",
          file=sys.stderr)
    return folder


def run_folder(run: str) -> Path:
    return ENDED / run.replace("/", "_")


def say_ended(run: str, job_id: str) -> None:
    """Leave the file that tells the submitting Snakemake of ``run`` this cluster job has ended."""
    try:
        folder = run_folder(run)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / job_id).touch()
    except OSError:  # the status checks notice the end anyway, a little later
        pass


def ended_jobs(run: str, job_ids: set[str]) -> set[str]:
    """Which of ``job_ids`` have said they ended."""
    try:
        return job_ids & set(os.listdir(run_folder(run)))
    except OSError:
        return set()


def forget_ended(run: str, job_ids: set[str]) -> None:
    """Remove what ``job_ids`` left, once Slurm has told how they ended."""
    for job_id in job_ids:
        try:
            (run_folder(run) / job_id).unlink(missing_ok=True)
        except OSError:
            pass


def forget_runs(keep: str, older_than_s: float) -> None:
    """Remove the run folders (but ``keep``'s) last written more than ``older_than_s`` ago."""
    try:
        folders = list(ENDED.iterdir())
    except OSError:
        return
    for folder in folders:
        try:
            if folder.name != keep and time.time() - folder.stat().st_mtime > older_than_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def stop_processes_under(folder: str, remove: bool = False, grace_s: float = 5.0) -> list[int]:
    """SIGTERM every process of this user whose command line names a path in ``folder`` (SIGKILL after
    ``grace_s``); with ``remove``, delete the folder afterwards. Returns their pids."""
    needle = folder.rstrip("/").encode() + b"/"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if proc.stat().st_uid == os.geteuid() and needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGTERM)
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
    return pids


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie child of ours counts as gone, and is reaped)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------------------------------------------------
# The submitting Snakemake
# ---------------------------------------------------------------------------------------------------------


class StatusUnknown(Exception):
    """Slurm cannot report job states with the status command the plugin uses."""


def status_command(executor) -> tuple[str, list[str]]:
    """The name and command line of the status query the Slurm plugin (2.8) will run for its jobs.

    Mirrors the plugin: squeue is replaced by sacct when sacct exists and Slurm forgets finished jobs
    (MinJobAge) sooner than three initial check intervals; sacct by squeue when there is no sacct.
    """
    import snakemake_executor_plugin_slurm as plugin

    name = executor.get_status_command()
    initial = getattr(executor.workflow.executor_settings, "init_seconds_before_status_checks", 40)
    if name == "squeue" and plugin.is_query_tool_available("sacct"):
        min_job_age = plugin.get_min_job_age()
        if min_job_age is None or min_job_age < 3 * initial:
            name = "sacct"
    if name == "sacct" and not plugin.is_query_tool_available("sacct"):
        name = "squeue"
    query = plugin.query_job_status_sacct if name == "sacct" else plugin.query_job_status_squeue
    return name, shlex.split(query(executor.run_uuid))


def probe_status_command(executor) -> None:
    """Run the plugin's status query once; raise StatusUnknown with one sentence if it fails."""
    name, command = status_command(executor)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=STATUS_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        reason = f"it did not answer within {STATUS_PROBE_TIMEOUT_S} s"
    except OSError as exc:
        reason = str(exc)
    else:
        if done.returncode == 0:
            return
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[0] if lines else f"exit status {done.returncode}"
    other = "squeue" if name == "sacct" else "sacct"
    raise StatusUnknown(
        f"sensor-charts: stopped before submitting any job: Slurm cannot report job states with {name} here "
        f"({reason.rstrip('.')}); set slurm-status-command: {other} in profiles/slurm/config.yaml (or pass "
        f"--slurm-status-command {other}), see docs/cluster.md."
    )


def adapt_slurm_plugin() -> None:
    """Adapt the Slurm executor plugin (2.8; any other version, or no plugin, is left as it is):

    * A cluster job's script runs the job's rules itself: its Snakemake gets the local executor, every
      CPU of the allocation and ``--force-use-threads``. The plugin would have it run each rule (each rule
      of a group job, one after the other) as a job step with a Snakemake of its own (~2-3 s per rule, the
      cost that grouping is meant to save), and Snakemake leaves ``--force-use-threads`` out for group
      jobs, so every ``run:`` block would start yet another Snakemake. The work stays in the job's
      allocation (its batch step) either way.
    * Before the first submission, the status command is run once: a cluster where it fails (sacct
      without accounting) stops the run at once, in one sentence, instead of leaving its jobs "running".
    * A status check whose query fails no longer drops the jobs it was asked about (the plugin forgets
      them, and Snakemake then waits forever); a job whose state stays unknown for STATUS_UNKNOWN_LIMIT_S
      (the query keeps failing, or Slurm no longer lists the job) is reported failed, with the reason.
    * Slurm is asked when a job of the run says it has ended (``ENDED``), and otherwise at most
      STATUS_INTERVAL_MAX_S apart.
    """
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:  # not installed: not a Slurm run
        return
    executor_class = getattr(plugin, "Executor", None)
    needed = ("__post_init__", "check_active_jobs", "additional_general_args", "get_status_command",
              "report_job_error", "shutdown")
    helpers = ("query_job_status", "query_job_status_sacct", "query_job_status_squeue", "get_min_job_age",
               "is_query_tool_available")
    if executor_class is None or getattr(executor_class, "_sensorcharts_adapted", False):
        return
    if not all(hasattr(executor_class, n) for n in needed) or not all(hasattr(plugin, n) for n in helpers):
        return
    from snakemake_interface_common.exceptions import WorkflowError

    original_init = executor_class.__post_init__
    original_args = executor_class.additional_general_args
    original_check = executor_class.check_active_jobs
    original_shutdown = executor_class.shutdown
    original_query = plugin.query_job_status
    answers = []  # what the plugin's status queries returned during the current check
    # External job id -> when Slurm last reported its state (or when it was first checked). Module state,
    # not the executor's: the plugin's status thread may check before __post_init__ has finished.
    known: dict[str, float] = {}
    # When Slurm was last asked (time.monotonic), and how many queries in a row a named job outlived.
    last_query, outlived = [float("-inf")], [0]

    def __post_init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        try:
            probe_status_command(self)
        except StatusUnknown as exc:
            raise WorkflowError(str(exc)) from None
        last_query[0] = time.monotonic()  # the probe was a query: the next is due a full interval later
        forget_runs(keep=self.run_uuid, older_than_s=ENDED_KEPT_S)

    def shutdown(self, *args, **kwargs):
        try:
            original_shutdown(self, *args, **kwargs)
        finally:  # a job cancelled as the run stops may still say it ended: its file goes with the folder
            if getattr(self, "run_uuid", None):
                shutil.rmtree(run_folder(self.run_uuid), ignore_errors=True)

    def additional_general_args(self):
        settings = self.workflow.executor_settings
        if getattr(settings, "pass_command_as_script", False) or getattr(settings, "array_jobs", None):
            return original_args(self)  # what these settings pass is for the job-step executor only
        # Later on the command line than the plugin's own --cores, so this one counts.
        return "--executor local --cores all --force-use-threads"

    async def query_job_status(command, logger):
        answer = await original_query(command, logger)
        answers.append(answer[0])
        return answer

    async def check_active_jobs(self, active_jobs):
        # An exception here would end the plugin's status thread silently, and the run would wait forever:
        # only the plugin's own code may raise.
        self.next_seconds_between_status_checks = ENDED_LOOK_S
        run = getattr(self, "run_uuid", None)  # set by the plugin's __post_init__, which may not have finished
        active = {str(job.external_jobid) for job in active_jobs}
        ended = ended_jobs(run, active) if run else set()
        wait = min(STATUS_QUERY_MIN_S * 2 ** outlived[0], STATUS_INTERVAL_MAX_S) if ended else STATUS_INTERVAL_MAX_S
        if active_jobs and time.monotonic() - last_query[0] < wait:
            for job in active_jobs:  # none has said it ended, or Slurm was asked a moment ago: ask later
                yield job
            return
        if active_jobs:
            last_query[0] = time.monotonic()
        answers.clear()
        still_active = [job async for job in original_check(self, active_jobs)]
        answer = answers[-1] if answers else None  # the plugin acts on its last attempt's answer
        if active_jobs and answer is None:  # the query failed: the plugin reported and kept nothing
            still_active = list(active_jobs)
        now = time.monotonic()
        waiting = set()
        for job in still_active:
            job_id = job.external_jobid
            since = known.setdefault(job_id, now)
            if answer is not None and (job_id in answer or str(job_id).split("_")[0] in answer):
                since = known[job_id] = now
            if now - since < STATUS_UNKNOWN_LIMIT_S:
                waiting.add(str(job_id))
                yield job
                continue
            known.pop(job_id, None)
            reason = _unknown_state(self, job_id, now - since, answer is None)
            self.logger.error(reason.strip())  # Snakemake does not print the message of a group job's error
            self.report_job_error(job, msg=reason)
        self.next_seconds_between_status_checks = ENDED_LOOK_S
        if run:
            forget_ended(run, active - waiting)
        for job_id in sorted(ended - waiting):
            self.logger.info(f"sensor-charts: Slurm job {job_id} said it had ended, and Slurm was asked at once")
        # a named job still running (or a query that failed): ask less often, back to 2 s once none is named
        outlived[0] = min(outlived[0] + 1, 3) if ended & waiting else 0

    executor_class.__post_init__ = __post_init__
    executor_class.additional_general_args = additional_general_args
    executor_class.check_active_jobs = check_active_jobs
    executor_class.shutdown = shutdown
    plugin.query_job_status = query_job_status
    executor_class._sensorcharts_adapted = True


def _unknown_state(executor, job_id, seconds: float, query_failed: bool) -> str:
    """One sentence: why the run stops waiting for Slurm job ``job_id``."""
    try:
        _, command = status_command(executor)
        how = shlex.join(command)
    except Exception:  # noqa: BLE001  (a message must come out whatever Slurm does)
        how = "the status command"
    why = "it fails" if query_failed else "it no longer lists the job"
    return (f"sensor-charts: the state of Slurm job {job_id} has been unknown for {seconds:.0f} s ({how}: {why}), "
            "so the run stops waiting for it; see docs/cluster.md. ")
