"""Run the real ``snakemake`` on a temporary working directory, as a user deploying the workflow would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@dataclass
class Run:
    returncode: int
    output: str

    def jobs(self) -> dict[str, int]:
        """Job counts per rule from Snakemake's 'Job stats' table."""
        counts: dict[str, int] = {}
        lines = self.output.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Job stats:"):
                for row in lines[i + 3 :]:
                    parts = row.split()
                    if len(parts) != 2 or not parts[1].isdigit():
                        break
                    if parts[0] != "total":
                        counts[parts[0]] = int(parts[1])
                break
        return counts


class Workdir:
    """A working directory with ``config/config.yaml`` = the repo's config updated with ``overrides``."""

    def __init__(self, path: Path, database_url: str | None, env: dict | None = None, **overrides):
        self.path = path
        config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        for key, value in overrides.items():
            if key in ("database", "demo"):
                config[key].update(value)
            else:
                config[key] = value
        (path / "config").mkdir(parents=True, exist_ok=True)
        (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        # A clean slate: no database or publishing settings of the developer's shell leak into a test.
        publishing = ("PINATA_", "CLOUDFLARE_", "KV_NAMESPACE_ID", "DELETE_LOCAL_FILES")
        self.env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith(publishing)}
        self.env.update(env or {})
        if database_url:
            self.env["DATABASE_URL"] = database_url

    def snakemake(self, *args: str, check: bool = True, wrapper: bool = False) -> Run:
        """Run snakemake (through tools/locked-snakemake with ``wrapper``) in this directory."""
        cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(self.path), *args]
        if wrapper:
            cmd = [str(REPO / "tools" / "locked-snakemake"), *cmd[1:]]
        env = dict(self.env, PATH=f"{Path(SNAKEMAKE).parent}:{self.env.get('PATH', '')}")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.path)
        run = Run(proc.returncode, proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{run.output[-4000:]}")
        return run

    def start(self, *args: str, wrapper: bool = True) -> subprocess.Popen:
        """Start a run in the background, in its own process group (so a test can kill all of it)."""
        cmd = [str(REPO / "tools" / "locked-snakemake") if wrapper else SNAKEMAKE,
               "--snakefile", str(REPO / "Snakefile"), "--directory", str(self.path), *args]
        env = dict(self.env, PATH=f"{Path(SNAKEMAKE).parent}:{self.env.get('PATH', '')}")
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=self.path, start_new_session=True)

    def files(self, pattern: str) -> list[Path]:
        return sorted(self.path.glob(pattern))

    def receipts(self) -> dict[str, dict]:
        """Every chart's receipt, by chart key (``sensor:interval:stamp``), from all receipts files."""
        receipts: dict[str, dict] = {}
        for path in self.files("results/receipts/*/*.json"):
            for key, receipt in json.loads(path.read_text(encoding="utf-8")).items():
                assert key not in receipts, f"{key} in two receipts files"
                receipts[key] = receipt
        return receipts

    def snapshot(self, pattern: str = "results/**/*") -> dict[str, tuple[bytes, int]]:
        """Content and mtime (ns) of every file under ``results/``, but the heartbeat every successful run
        writes (``results/metrics/sensor_charts_run.prom``: when a run last ended well, for alerting)."""
        return {
            str(p.relative_to(self.path)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in self.path.glob(pattern)
            if p.is_file() and p.name != "sensor_charts_run.prom"
        }


def pids_naming(folder: Path) -> list[int]:
    """The processes (but this one) whose command line names a path in ``folder``."""
    needle, pids = str(folder).encode() + b"/", []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def stop_processes_naming(folder: Path) -> list[int]:
    """SIGTERM every process (but this one) whose command line names a path in ``folder``; return their pids."""
    pids = []
    for pid in pids_naming(folder):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        pids.append(pid)
    return pids
