"""Indexing published charts in Cloudflare KV within a daily budget, and deleting on Pinata what nothing uses.

One job per run (``publish_index``) reads the run's receipts into the ledger (ledger.py), then:

1. **retires** days older than ``keep_days`` (their dated keys through KV's bulk delete; their folders follow
   through step 3);
2. **writes KV**: dated keys ``{sensor}:{interval}:{stamp}`` of finished periods whose chart KV does not hold
   yet, and the ``{sensor}:{interval}:latest`` pointers, as much as the day's budget allows (kvbudget.py).
   ``latest`` only moves forward: never to a chart whose period ends before the one KV points to;
3. **deletes pins** nothing refers to: a root (a chart uploaded alone, or a day's folder) that no KV key points
   to and that holds no chart's current version is deleted once it has been so for ``grace_minutes``
   (KV reads lag up to a minute behind writes). A delete that fails is retried by a later run.

Then it writes the run's record (with where the pins stand against Pinata's file quota, pinquota.py), the
Prometheus counters, and ``results/publish/schedule.json``: when the index job has work again (a period ends,
a pointer may be refreshed, a grace period ends, waiting keys may fit), which the workflow reads while it
builds the DAG to decide whether to run this job without new charts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from . import atomic, metrics
from .chartid import ChartId
from .kvbudget import DAY_S, allowance, capacity, dated_keys_due, dated_keys_per_day, next_utc_midnight
from .ledger import Ledger
from .pinquota import PinQuota, most_runs_within, runs_of_the_last_day
from .providers import (
    CredentialError,
    KVClient,
    KVLimitReached,
    PinataClient,
    PublishError,
    RateLimiter,
    RetryPolicy,
    Settings,
)
from .uploads import PinnedRecords, read_receipts

KV_METADATA_FIELDS = ("filename", "sensor_type", "interval", "data_points", "processing_time", "start_time",
                      "end_time")
BACKLOG_RETRY = timedelta(minutes=30)  # how soon a run with dated keys still waiting looks again


@dataclass(frozen=True)
class Options:
    """Config ``publish``: the KV budget, the grace before deleting, retention, Pinata's file quota."""

    kv_writes_per_day: int | None = 1000
    kv_deletes_per_day: int | None = 1000
    grace_minutes: float = 10
    keep_days: int | None = None
    pinata_files: int | None = 500


@dataclass(frozen=True)
class Calendar:
    """What the cron window is: the zone, the sensors, the look-back days, and the reference instant."""

    tz: ZoneInfo
    sensors: tuple[str, ...]
    lookback: int
    now: datetime

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()


@dataclass(frozen=True)
class Paths:
    ledger: Path = Path("results/publish/ledger.sqlite")
    schedule: Path = Path("results/publish/schedule.json")
    pinned: Path = Path("results/pinned")
    receipts: Path = Path("results/receipts")
    metrics: Path = Path("results/metrics/sensor_charts.prom")
    legacy_state: Path = Path("results/kv/state.json")  # what this deployment wrote before the ledger


def kv_value(receipt: dict, updated_at: float) -> str:
    """The KV value layout of the service this replaces (``updated_at`` is unix seconds as a string)."""
    meta = receipt["metadata"]
    return json.dumps({"ipfs_url": receipt["ipfs_url"], "updated_at": str(int(updated_at)),
                       "metadata": {k: meta[k] for k in KV_METADATA_FIELDS}})


def period_end(meta: dict) -> float:
    return datetime.fromisoformat(meta["end_time"]).timestamp()


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def ingest(ledger: Ledger, receipts: list[dict], now: float, receipts_dir: Path) -> set[str]:
    """Record each receipt as its chart's current version; return the days that arrived as folders. Their
    receipts of single uploads (made while the day was in the cron window) are deleted: they name pins that
    the folder replaces."""
    folder_days = set()
    with ledger.step():
        for receipt in receipts:
            meta = receipt["metadata"]
            chart = ChartId.from_meta(meta)
            day = chart.stamp[:10]
            uploaded = receipt.get("uploaded_at")
            updated = datetime.fromisoformat(uploaded).timestamp() if uploaded else now
            in_folder = bool(receipt.get("path"))
            ledger.put_chart(chart.key, day, chart.sensor, chart.interval, chart.stamp, receipt["ipfs_url"],
                             receipt.get("root_cid") or receipt["cid"], in_folder, period_end(meta),
                             kv_value(receipt, updated))
            if in_folder:
                folder_days.add(day)
    for day in folder_days:
        for kind in ("day", "cumulative"):
            (receipts_dir / kind / f"{day}.json").unlink(missing_ok=True)
    return folder_days


def sync_pins(ledger: Ledger, records: PinnedRecords, now: float) -> int:
    """Mirror ``results/pinned`` into the ledger; return how many pins are new (uploads since last time). When
    a chart was uploaded alone (a new version), ``now`` joins the fact ``upload_runs`` (the last day's), from
    which the Pinata estimate learns how often versions are superseded."""
    pinned = records.all()
    with ledger.step() as db:
        known = ledger.pins()
        for root, record in pinned.items():
            if root not in known:
                db.execute("INSERT INTO pins (root, pinata_id, kind, day, uploaded_at) VALUES (?, ?, ?, ?, ?)",
                           (root, record.get("id"), record.get("kind", "file"), record.get("day"),
                            record.get("uploaded_at")))
        for root in set(known) - set(pinned):
            db.execute("DELETE FROM pins WHERE root = ?", (root,))
        new = set(pinned) - set(known)
        ledger.add_to("uploads_total", len(new))
        if any(pinned[root].get("kind", "file") == "file" for root in new):
            earlier = [t for t in runs_of_the_last_day(ledger.fact("upload_runs", []), now) if t < now]
            ledger.set_fact("upload_runs", [*earlier, now])
    return len(new)


def import_legacy_state(ledger: Ledger, path: Path, now: float) -> None:
    """The KV keys a deployment wrote before the ledger existed (``results/kv/state.json``: key → CID)."""
    if not path.exists() or ledger.fact("legacy_state_imported"):
        return
    with ledger.step():
        for key, cid in json.loads(path.read_text()).items():
            if ledger.kv_entry(key) is None:
                ledger.wrote(key, f"ipfs://{cid}", cid, None, now)
        ledger.set_fact("legacy_state_imported", True)


class Indexer:
    def __init__(self, paths: Paths, settings: Settings, options: Options, calendar: Calendar,
                 kv_limiter: RateLimiter, pinata_limiter: RateLimiter, policy: RetryPolicy, log=None):
        self.paths, self.settings, self.options, self.cal, self.log = paths, settings, options, calendar, log
        self.now = calendar.now.timestamp()
        self.utc_day = calendar.now.astimezone(timezone.utc).date().isoformat()
        self.live = settings.uploads_enabled and not settings.index_missing
        self.kv = KVClient(settings, kv_limiter, policy, log) if self.live else None
        self.pinata = PinataClient(settings, pinata_limiter, policy, log) if settings.uploads_enabled else None
        self.records = PinnedRecords(paths.pinned)
        self.ledger = Ledger(paths.ledger)
        self.record: dict = {"at": _iso(self.now), "written_to_kv": self.live, "written": {"dated": [], "latest": []},
                             "latest_kept_because_newer": {}, "deferred": {}, "kv_deleted": [], "pins_deleted": [],
                             "delete_failures": [], "documents": {}}

    # ---- KV

    def _write(self, documents: dict[str, str], roots: dict[str, tuple[str, float | None]]) -> None:
        """Write ``documents`` to KV, booking each confirmed key and every pair sent against today's budget."""
        def written(keys, billed):
            with self.ledger.step():
                self.ledger.spend(self.utc_day, writes=billed)
                self.ledger.add_to("kv_writes_total", billed)
                for key in keys:
                    url = json.loads(documents[key])["ipfs_url"]
                    self.ledger.wrote(key, url, roots[key][0], roots[key][1], self.now)

        self.kv.put_many(documents, written)

    def retire_old_days(self) -> None:
        if self.options.keep_days is None:
            return
        cutoff = (self.cal.today - timedelta(days=self.options.keep_days)).isoformat()
        db = self.ledger.db
        with self.ledger.step():
            db.execute("DELETE FROM charts WHERE day < ?", (cutoff,))
        for path in self.paths.receipts.glob("*/*.json"):  # they name pins that are about to go
            if path.stem < cutoff:
                path.unlink()
        old = sorted(r["key"] for r in db.execute("SELECT key FROM kv WHERE key NOT LIKE '%:latest'")
                     if r["key"].rsplit(":", 1)[1][:10] < cutoff)
        if not old:
            return
        if not self.live:
            with self.ledger.step():
                db.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in old])
            return
        usage = self.ledger.usage(self.utc_day)
        limit = self.options.kv_deletes_per_day
        room = len(old) if limit is None else max(0, limit - usage["deletes"])
        if usage["deletes_exhausted"]:
            room = 0
        batch = old[:room]

        def deleted(done, billed):
            with self.ledger.step():
                self.ledger.spend(self.utc_day, deletes=billed)
                db.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in done])
                self.record["kv_deleted"] += done

        if batch:
            try:
                self.kv.delete_many(batch, deleted)
            except KVLimitReached:
                with self.ledger.step():
                    self.ledger.mark_exhausted(self.utc_day, "deletes")
        if len(old) > len(self.record["kv_deleted"]):
            self.record["deferred"]["kv_deletes"] = len(old) - len(self.record["kv_deleted"])

    def index(self, keys_of_run: set[str]) -> None:
        dated_rows = self.ledger.dated_waiting(self.now)
        if not self.live:  # nothing is written, so every key would wait forever: list this run's keys only
            dated_rows = [row for row in dated_rows if row["key"] in keys_of_run]
        newest = self.ledger.newest_charts()
        changed = [row for row in newest if (self.ledger.kv_entry(ChartId(row["sensor"], row["interval"], "")
                                                                 .latest_key) or {"url": None})["url"] != row["url"]]
        usage = self.ledger.usage(self.utc_day)
        sensors, tz = len(self.cal.sensors), self.cal.tz
        due_later = dated_keys_due(self.cal.now, next_utc_midnight(self.cal.now), tz, sensors, self.cal.lookback)
        refreshed = self.ledger.fact("latest_refreshed_at")
        allow = allowance(
            limit=self.options.kv_writes_per_day if self.live else None, used=usage["writes"],
            exhausted=bool(usage["writes_exhausted"]) and self.live, now=self.cal.now,
            dated_waiting=len(dated_rows), dated_due_later=due_later,
            dated_per_day=dated_keys_per_day(self.cal.now, tz, sensors, self.cal.lookback), latest_keys=sensors * 3,
            latest_changed=len(changed),
            latest_refreshed_at=None if refreshed is None else datetime.fromtimestamp(refreshed, timezone.utc))
        self.allowance = allow
        documents = {row["key"]: row["value"] for row in dated_rows[: allow.dated]}
        roots = {row["key"]: (row["root"], row["ends"]) for row in dated_rows[: allow.dated]}
        latest = {}
        if allow.latest:
            for row in changed:
                key = ChartId(row["sensor"], row["interval"], "").latest_key
                kept = self._kept_back(key, row)
                if kept:
                    self.record["latest_kept_because_newer"][key] = kept
                    continue
                latest[key] = row["value"]
                roots[key] = (row["root"], row["ends"])
        self.record["written"]["dated"] = sorted(documents)
        self.record["written"]["latest"] = sorted(latest)
        self.record["documents"] = {k: json.loads(v) for k, v in sorted({**documents, **latest}.items())}
        kept = len(self.record["latest_kept_because_newer"])
        self.record["deferred"].update({"dated": len(dated_rows) - len(documents),
                                        "latest": len(changed) - len(latest) - kept, "reason": allow.reason})
        if not self.live or not (documents or latest):
            return
        try:
            self._write({**documents, **latest}, roots)
        except KVLimitReached:
            with self.ledger.step():
                self.ledger.mark_exhausted(self.utc_day, "writes")
            raise
        if latest:
            with self.ledger.step():
                self.ledger.set_fact("latest_refreshed_at", self.now)

    def _kept_back(self, key: str, row) -> str | None:
        """The end (UTC) of the period ``key`` points to when that is later than ``row``'s (latest never moves
        back: a backfill of January must not replace a pointer to today). Asks KV itself when this
        deployment has no record of the key (another deployment, or a ledger started afresh)."""
        entry = self.ledger.kv_entry(key)
        if entry is not None and entry["ends"] is not None:
            return _iso(entry["ends"]) if entry["ends"] > row["ends"] else None
        current = self.kv.get(key) if self.kv else None
        if current is None:
            return None
        value = json.loads(current)
        if value.get("ipfs_url") == row["url"]:
            return None
        end = datetime.fromisoformat(value["metadata"]["end_time"])
        return _iso(end.timestamp()) if end.timestamp() > row["ends"] else None

    # ---- Pinata

    def collect_garbage(self) -> None:
        referenced = self.ledger.referenced_roots()
        grace = self.options.grace_minutes * 60
        for root, pin in self.ledger.pins().items():
            with self.ledger.step() as db:
                if root in referenced:
                    db.execute("UPDATE pins SET unreferenced_since = NULL WHERE root = ?", (root,))
                    continue
                if pin["unreferenced_since"] is None:
                    db.execute("UPDATE pins SET unreferenced_since = ? WHERE root = ?", (self.now, root))
                    continue
            if self.now - pin["unreferenced_since"] < grace or self.pinata is None:
                continue
            self._delete_pin(root, pin)

    def _delete_pin(self, root: str, pin) -> None:
        self.records.deleting(root, True)
        try:
            if not pin["pinata_id"]:
                raise PublishError("no Pinata id was recorded for it")
            self.pinata.delete(pin["pinata_id"])
        except PublishError as exc:
            self.records.deleting(root, False)
            if isinstance(exc, CredentialError):  # every delete would be refused: say so, do not just retry
                raise
            if self.log:
                self.log.warning("Pinata: could not delete %s (%s); a later run tries again", root, exc)
            with self.ledger.step() as db:
                db.execute("UPDATE pins SET failed_deletes = failed_deletes + 1, last_error = ? WHERE root = ?",
                           (str(exc)[:300], root))
                self.ledger.add_to("pin_delete_failures_total", 1)
            self.record["delete_failures"].append({"root": root, "error": str(exc)[:300]})
            return
        self.records.remove(root)
        with self.ledger.step() as db:
            db.execute("DELETE FROM pins WHERE root = ?", (root,))
            self.ledger.add_to("pin_deletes_total", 1)
        self.record["pins_deleted"].append({"root": root, "id": pin["pinata_id"], "kind": pin["kind"],
                                            "day": pin["day"]})

    # ---- what the run leaves for operators and for the next run

    def finish(self, succeeded: bool) -> dict:
        usage = self.ledger.usage(self.utc_day)
        limit = self.options.kv_writes_per_day
        waiting = self.ledger.dated_waiting(self.now) if self.live else []  # offline nothing ever waits
        pins = self.ledger.pins()
        with self.ledger.step():
            if succeeded:
                self.ledger.set_fact("last_publish_at", self.now)
        self.record["budget"] = {
            "utc_day": self.utc_day, "kv_writes_per_day": limit, "writes_today": usage["writes"],
            "writes_left_today": None if limit is None else max(0, limit - usage["writes"]),
            "deletes_today": usage["deletes"], "cloudflare_limit_reached": bool(usage["writes_exhausted"]),
        }
        self.record["pinned"] = len(pins)
        quota = self._pin_quota(pins)
        if quota is not None:
            self.record["pinata"] = dict(quota.figures(), note=quota.note())
        self.record["keys"] = len(self.record["documents"])
        if self.live and limit is not None:
            room = capacity(limit, self.cal.now, self.cal.tz, len(self.cal.sensors), self.cal.lookback)
            self.record["budget"].update({"dated_keys_per_day": room.dated_per_day,
                                          "latest_writes_per_day": room.latest_per_day,
                                          "catch_up_per_day": room.catch_up_per_day})
            note = room.note(len(waiting), sum(row["ends"] < self.now - DAY_S for row in waiting))
            if note:
                self.record["deferred"]["note"] = note
        metrics.write(self.paths.metrics, [
            ("pinata_uploads_total", "counter", "Files and folders uploaded to Pinata.",
             self.ledger.fact("uploads_total", 0)),
            ("pinata_deletes_total", "counter", "Pins deleted on Pinata (superseded or retired).",
             self.ledger.fact("pin_deletes_total", 0)),
            ("pinata_delete_failures_total", "counter", "Pinata deletes that failed (retried by a later run).",
             self.ledger.fact("pin_delete_failures_total", 0)),
            ("pinned_files", "gauge", "Files and folders this deployment holds on Pinata.", len(pins)),
            ("pinata_file_limit", "gauge", "publish.pinata_files (absent when unlimited).",
             None if quota is None else quota.limit),
            ("pinata_full_in_days", "gauge", "Days until a cron's pins meet publish.pinata_files at one folder a "
             "day (absent when never).", None if quota is None else quota.full_in_days),
            ("kv_writes_total", "counter", "KV writes sent (each pair of a bulk write counts).",
             self.ledger.fact("kv_writes_total", 0)),
            ("kv_writes_today", "gauge", "KV writes sent this UTC day.", usage["writes"]),
            ("kv_write_budget", "gauge", "kv_writes_per_day (absent when unlimited).", limit),
            ("kv_writes_left_today", "gauge", "KV writes left in today's budget (absent when unlimited).",
             None if limit is None else max(0, limit - usage["writes"])),
            ("kv_deletes_today", "gauge", "KV deletes sent this UTC day.", usage["deletes"]),
            ("kv_waiting_keys", "gauge", "Dated keys of finished periods waiting for budget.", len(waiting)),
            ("last_publish_timestamp_seconds", "gauge", "When the indexing job last finished without error.",
             self.ledger.fact("last_publish_at")),
        ])
        atomic.write_json(self.paths.schedule, self._schedule(len(waiting)))
        return self.record

    def _pin_quota(self, pins: dict) -> PinQuota | None:
        """Where this deployment stands against Pinata's file quota (None: no uploads, or no limit set)."""
        if self.pinata is None or self.options.pinata_files is None:
            return None
        runs = runs_of_the_last_day(self.ledger.fact("upload_runs", []), self.now)
        return PinQuota(self.options.pinata_files, len(self.cal.sensors), self.cal.lookback, self.options.keep_days,
                        self.options.grace_minutes, pinned=len(pins),
                        folders=sum(pin["kind"] == "folder" for pin in pins.values()),
                        runs_in_grace=most_runs_within(runs, self.options.grace_minutes * 60))

    def _schedule(self, waiting: int) -> dict:
        """When this job has work again without new charts, and which days are still published chart by chart."""
        times = [self.ledger.next_period_end(self.now)]
        allow = getattr(self, "allowance", None)
        if allow is not None and allow.next_latest_at is not None:
            times.append(allow.next_latest_at.timestamp())
        if waiting:
            exhausted = bool(self.ledger.usage(self.utc_day)["writes_exhausted"])
            times.append(next_utc_midnight(self.cal.now).timestamp() if exhausted
                         else min(next_utc_midnight(self.cal.now).timestamp(),
                                  self.now + BACKLOG_RETRY.total_seconds()))
        grace = self.options.grace_minutes * 60
        for pin in self.ledger.pins().values():
            if pin["failed_deletes"]:
                times.append(self.now)
            elif pin["unreferenced_since"] is not None:
                times.append(pin["unreferenced_since"] + grace)
        if self.options.keep_days is not None:
            tomorrow = self.cal.today + timedelta(days=1)
            times.append(datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=self.cal.tz).timestamp())
        due = min((t for t in times if t is not None), default=None)
        days = [r["day"] for r in self.ledger.db.execute(
            "SELECT DISTINCT day FROM charts WHERE in_folder = 0 ORDER BY day")]
        return {"due_at": _iso(due), "charts_published_alone": days}


def publish_index(receipt_paths, paths: Paths, settings: Settings, options: Options, calendar: Calendar,
                  kv_limiter: RateLimiter, pinata_limiter: RateLimiter, policy: RetryPolicy, log=None) -> dict:
    """Index the receipts in KV and tidy Pinata (see the module's docstring); return the run's record.

    Without Pinata or Cloudflare credentials nothing is sent, and the documents that would be written are in
    the record. A 10048 answer (Cloudflare's daily limit) ends the job with one sentence; what was not
    written waits in the ledger for a later run.
    """
    indexer = Indexer(paths, settings, options, calendar, kv_limiter, pinata_limiter, policy, log)
    with indexer.ledger:
        import_legacy_state(indexer.ledger, paths.legacy_state, indexer.now)
        sync_pins(indexer.ledger, indexer.records, indexer.now)
        receipts = read_receipts(receipt_paths)
        ingest(indexer.ledger, receipts, indexer.now, paths.receipts)
        try:
            indexer.retire_old_days()
            indexer.index({ChartId.from_meta(r["metadata"]).key for r in receipts})
        except KVLimitReached:
            indexer.finish(succeeded=False)
            waiting = len(indexer.ledger.dated_waiting(indexer.now))
            raise PublishError(
                "Cloudflare KV refused writes with error 10048: the account's daily write limit is used up "
                f"until 00:00 UTC; {waiting} dated key(s) and the latest pointers wait in {paths.ledger} and "
                "later runs write them") from None
        indexer.collect_garbage()
        return indexer.finish(succeeded=True)


def live_roots(paths: Paths) -> set[str]:
    """Roots the ledger says are in use (KV points to them, or they hold a chart's current version)."""
    if not Path(paths.ledger).exists():
        return set()
    with Ledger(paths.ledger) as ledger:
        return ledger.referenced_roots()


def index_due(schedule_path: str | os.PathLike, now: datetime) -> bool:
    """Whether the schedule the last index job left says it has work by ``now`` (no schedule: no)."""
    try:
        due = json.loads(Path(schedule_path).read_text()).get("due_at")
    except (OSError, ValueError):
        return False
    return due is not None and datetime.fromisoformat(due) <= now


def charts_published_alone(schedule_path: str | os.PathLike) -> list[str]:
    try:
        return list(json.loads(Path(schedule_path).read_text()).get("charts_published_alone", []))
    except (OSError, ValueError):
        return []
