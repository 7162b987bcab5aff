"""Putting charts on IPFS through Pinata, and the receipts that say where each one is.

Two ways, by where a local day stands:

* a day in the cron window (today and the look-back days) changes every few minutes, so each chart is
  uploaded on its own (:func:`upload_charts`), and only a chart whose bytes are new is sent;
* a finished day is published as **one folder** of all its charts (:func:`upload_folder`): one CAR file
  built here, whose root Pinata keeps as given, so the folder's CID is known before the upload and checked
  against Pinata's answer. One file on the plan's quota and one request per day, instead of 78.

``results/pinned/{root CID}.json`` records what Pinata confirmed, written the moment an upload succeeds:
identical bytes (a chart, or a whole folder) are never uploaded twice, and a failed job loses nothing.
The indexing job deletes a record when it deletes the pin (indexing.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import atomic
from .chartid import ChartId
from .providers import CredentialError, PinataClient, PublishError, RateLimiter, RetryPolicy, Settings


@dataclass(frozen=True)
class Chart:
    png: Path
    meta: dict

    @property
    def id(self) -> ChartId:
        return ChartId.from_meta(self.meta)


def charts_of_job(image_paths, metadata_paths) -> list[Chart]:
    """The charts a job's inputs list, each with its metadata (from the render jobs' JSON files)."""
    metadata = {ChartId.from_meta(m): m for path in metadata_paths for m in json.loads(Path(path).read_text())}
    return [Chart(Path(png), metadata[ChartId.from_path(png)]) for png in image_paths]


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_receipt(meta: dict, data: bytes, cid: str, pinned: dict | None, root: str | None = None,
                 path: str | None = None) -> dict:
    """One chart's receipt: where it lives on IPFS, what it is, and whether it was uploaded.

    A chart uploaded alone is its own root (``ipfs://{cid}``); a chart in a day's folder is reached through
    the folder (``ipfs://{folder CID}/{path}``), which is what Pinata pins and gateways resolve.
    """
    root = root or cid
    return {
        "cid": cid,
        "ipfs_url": f"ipfs://{root}/{path}" if path else f"ipfs://{cid}",
        "root_cid": root,
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "uploaded": pinned is not None,
        "pinata_id": pinned.get("id") if pinned else None,
        "uploaded_at": pinned.get("uploaded_at") if pinned else None,
        "metadata": meta,
    }


def read_receipts(paths) -> list[dict]:
    """Every chart's receipt in the receipts files ``paths`` (each maps chart keys to receipts)."""
    return [receipt for path in paths for receipt in json.loads(Path(path).read_text(encoding="utf-8")).values()]


class PinnedRecords:
    """``{folder}/{root CID}.json``: what Pinata holds for this deployment, one record per root CID."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def get(self, root: str) -> dict | None:
        """The record of ``root``, or None when Pinata does not hold it (or is being asked to delete it: an
        upload then sends it again rather than point to a pin that may be gone)."""
        record = self._read(root)
        return None if record is None or record.get("deleting") else record

    def _read(self, root: str) -> dict | None:
        try:
            return json.loads((self.folder / f"{root}.json").read_text())
        except FileNotFoundError:
            return None

    def deleting(self, root: str, flag: bool) -> None:
        """Mark (or unmark) ``root`` as being deleted, before and after asking Pinata."""
        record = self._read(root)
        if record is not None:
            atomic.write_json(self.folder / f"{root}.json", dict(record, deleting=flag))

    def add(self, root: str, answer: dict, kind: str, **extra) -> dict:
        record = {"cid": root, "pinata_cid": answer.get("cid"), "id": answer.get("id"), "kind": kind,
                  "uploaded_at": utc_now_iso(), "network": answer.get("network"), "group_id": answer.get("group_id"),
                  "is_duplicate": answer.get("is_duplicate"), **extra}
        atomic.write_json(self.folder / f"{root}.json", record)
        return record

    def remove(self, root: str) -> None:
        (self.folder / f"{root}.json").unlink(missing_ok=True)

    def all(self) -> dict[str, dict]:
        records = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                records[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):  # a record being replaced: the next run reads it
                continue
        return records


def _check_answer(answer: dict, local: str, what: str, data: bytes | None = None) -> str:
    """Pinata's CID must be ours, compared in its CID version (a CIDv0 answer against our CIDv0)."""
    from .cid import cid_v0, cid_version

    answered = str(answer.get("cid", ""))
    expected = local
    if data is not None and answered and cid_version(answered) == 0:
        expected = cid_v0(data)
    if answered != expected:
        raise PublishError(f"Pinata answered CID {answered} for {what}, but its bytes give {expected}")
    return answered


def upload_charts(charts: list[Chart], pinned_dir: str | os.PathLike, settings: Settings, limiter: RateLimiter,
                  policy: RetryPolicy, threads: int = 4, log=None) -> tuple[dict[str, dict], dict[str, int]]:
    """Upload each chart on its own (unless already pinned); return the receipts by chart key, in the charts'
    order (the content of a receipts file), and counts.

    Every chart is tried: a job that fails writes no receipts, but the records of those that went through
    stay, so the next run sends only what is missing.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .cid import cid_v1

    records = PinnedRecords(pinned_dir)
    client = PinataClient(settings, limiter, policy, log) if settings.uploads_enabled else None
    counts = {"uploaded": 0, "already_pinned": 0, "local_only": 0}
    receipts: dict[str, dict] = {}
    counts_lock = threading.Lock()

    def one(chart: Chart) -> None:
        data = chart.png.read_bytes()
        cid = cid_v1(data)
        pinned = records.get(cid)
        outcome = "already_pinned" if pinned else "local_only"
        if pinned is None and client is not None:
            chart_id = chart.id
            answer = client.upload(data, chart_id.file_name, {"sensor": chart_id.sensor, "interval": chart_id.interval,
                                                              "stamp": chart_id.stamp})
            answered = _check_answer(answer, cid, chart_id.file_name, data)
            pinned = records.add(cid, dict(answer, cid=answered), "file")
            outcome = "uploaded"
        receipt = make_receipt(chart.meta, data, cid, pinned)
        with counts_lock:
            receipts[chart.id.key] = receipt
            counts[outcome] += 1

    errors: list[BaseException] = []
    pending = list(charts)
    # One at a time until an upload has gone through, so a rejected token costs one request, not one per
    # thread (a CredentialError ends the job at once: every other upload would be refused too).
    while pending and client is not None and counts["uploaded"] == 0:
        try:
            one(pending.pop(0))
        except (PublishError, OSError) as exc:
            if isinstance(exc, CredentialError):
                raise
            errors.append(exc)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for future in [pool.submit(one, chart) for chart in pending]:
            try:
                future.result()
            except CredentialError:
                pool.shutdown(cancel_futures=True)
                raise
            except (PublishError, OSError) as exc:
                errors.append(exc)  # keep going: every chart uploaded now is one less for the next run
    if errors:
        if log:
            for exc in errors:
                log.error("%s", exc)
        raise PublishError(f"{len(errors)} of {len(charts)} uploads failed; the first: {errors[0]}")
    return {chart.id.key: receipts[chart.id.key] for chart in charts}, counts


def upload_folder(charts: list[Chart], day: str, pinned_dir: str | os.PathLike, settings: Settings,
                  limiter: RateLimiter, policy: RetryPolicy, log=None) -> tuple[dict[str, dict], dict[str, int]]:
    """Upload a finished day's charts as one IPFS folder (``{sensor}/{interval}/{stamp}.png``, the layout of
    results/images), unless that exact folder is pinned already; return the receipts and counts."""
    from .cid import cid_v1, directory_car

    files = {chart.id.folder_path: chart.png.read_bytes() for chart in charts}
    root, car = directory_car(files)
    records = PinnedRecords(pinned_dir)
    pinned = records.get(root)
    outcome = "already_pinned" if pinned else "local_only"
    if pinned is None and settings.uploads_enabled:
        client = PinataClient(settings, limiter, policy, log)
        answer = client.upload_car(car, f"sensor-charts-{day}.car", {"date": day, "charts": str(len(files))})
        answered = _check_answer(answer, root, f"the folder of {day}")
        pinned = records.add(root, dict(answer, cid=answered), "folder", day=day, files=len(files), car_bytes=len(car))
        outcome = "uploaded"
    receipts = {}
    for chart in charts:
        path = chart.id.folder_path
        receipts[chart.id.key] = make_receipt(chart.meta, files[path], cid_v1(files[path]), pinned, root, path)
    counts = {"charts": len(charts), "folders_" + outcome: 1, "folder_bytes": len(car)}
    return receipts, counts
