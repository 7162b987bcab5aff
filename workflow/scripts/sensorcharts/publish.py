"""Uploading charts to IPFS through Pinata (v3 API) and indexing them in Cloudflare Workers KV.

Secrets come from the environment or a ``.env`` file and are never logged, written or put in an error
message: errors name the variable to fix, not its value. TLS verification is never turned off; a plain
``http://`` endpoint is accepted only on a loopback address (a local test double).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from .jobs import write_json_atomic

PINATA_UPLOAD_URL = "https://uploads.pinata.cloud/v3/files"
CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
KV_BULK_LIMIT = 10_000  # pairs per bulk request (Cloudflare's limit)
KV_SAME_KEY_INTERVAL_S = 1.0  # KV accepts one write per second to the same key
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class PublishError(RuntimeError):
    """A failure a person must act on; the message never contains a secret."""


class CredentialError(PublishError):
    """401/403: retrying is pointless; the message names the variable to fix."""


def read_dotenv(path: str | os.PathLike = ".env") -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (``#`` comments, optional quotes); missing file → {}."""
    values: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _flag(value: str | None, default: bool, name: str) -> bool:
    if value is None or value == "":
        return default
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise PublishError(f"{name} must be true or false, got {value!r}")


def _endpoint(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return url.rstrip("/")
    raise PublishError(f"{name} must be an https:// URL (http:// only on a loopback address), got {url!r}")


@dataclass(frozen=True)
class Settings:
    """Publishing settings from the environment (which wins) and ``.env``. Secrets are hidden from repr."""

    pinata_jwt: str | None = field(default=None, repr=False)
    pinata_group_id: str | None = None
    cloudflare_api_token: str | None = field(default=None, repr=False)
    cloudflare_account_id: str | None = None
    kv_namespace_id: str | None = None
    delete_local_files: bool = True
    pinata_upload_url: str = PINATA_UPLOAD_URL
    cloudflare_api_url: str = CLOUDFLARE_API_URL

    @classmethod
    def load(cls, environ=None, dotenv: str | os.PathLike = ".env") -> "Settings":
        env = {**read_dotenv(dotenv), **(os.environ if environ is None else environ)}

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            pinata_jwt=get("PINATA_JWT"),
            pinata_group_id=get("PINATA_GROUP_ID"),
            cloudflare_api_token=get("CLOUDFLARE_API_TOKEN"),
            cloudflare_account_id=get("CLOUDFLARE_ACCOUNT_ID"),
            kv_namespace_id=get("KV_NAMESPACE_ID"),
            delete_local_files=_flag(get("DELETE_LOCAL_FILES"), True, "DELETE_LOCAL_FILES"),
            pinata_upload_url=_endpoint(get("PINATA_UPLOAD_URL") or PINATA_UPLOAD_URL, "PINATA_UPLOAD_URL"),
            cloudflare_api_url=_endpoint(get("CLOUDFLARE_API_URL") or CLOUDFLARE_API_URL, "CLOUDFLARE_API_URL"),
        )

    @property
    def uploads_enabled(self) -> bool:
        return self.pinata_jwt is not None

    @property
    def index_missing(self) -> list[str]:
        """The Cloudflare variables that are not set (empty: KV writes are on)."""
        names = {"CLOUDFLARE_API_TOKEN": self.cloudflare_api_token,
                 "CLOUDFLARE_ACCOUNT_ID": self.cloudflare_account_id, "KV_NAMESPACE_ID": self.kv_namespace_id}
        return [name for name, value in names.items() if not value]


# ---------------------------------------------------------------------------------------------------------
# Rate limiting and retries
# ---------------------------------------------------------------------------------------------------------


class RateLimiter:
    """At most ``per_minute`` requests per minute, evenly spaced, for every thread and process sharing it.

    With ``path``, the schedule lives in that file under an exclusive ``flock``, so concurrent upload jobs
    on one machine share one budget (the Snakemake resource ``pinata`` caps how many run at once).
    """

    def __init__(self, per_minute: float, path: str | os.PathLike | None = None):
        self.interval = 60.0 / per_minute
        self.path = Path(path) if path else None
        self.next_free = 0.0
        self.lock = threading.Lock()

    def _reserve(self, hold: float = 0.0) -> float:
        """Claim the next free slot (or push it ``hold`` seconds out); return how long to wait."""
        with self.lock:
            if self.path is None:
                return self._advance(hold)
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.seek(0)
                try:
                    self.next_free = float(handle.read() or 0)
                except ValueError:
                    self.next_free = 0.0
                wait = self._advance(hold)
                handle.seek(0)
                handle.truncate()
                handle.write(repr(self.next_free))
                return wait

    def _advance(self, hold: float) -> float:
        now = time.time()  # wall clock: shared between processes
        if hold:
            self.next_free = max(self.next_free, now + hold)
            return 0.0
        wait = self.next_free - now
        self.next_free = max(now, self.next_free) + self.interval
        return wait

    def acquire(self) -> None:
        wait = self._reserve()
        if wait > 0:
            time.sleep(wait)

    def hold(self, seconds: float) -> None:
        """Keep everyone waiting ``seconds`` (a 429's Retry-After applies to the whole account)."""
        self._reserve(hold=seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_s: float = 1.0  # first delay; doubles each attempt, with full jitter
    max_backoff_s: float = 60.0
    timeout_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _error_text(response: requests.Response) -> str:
    """A short reason from either service's error body (never echoing request headers)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("reason") or error)[:200]
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(f"{e.get('code')} {e.get('message')}" for e in errors if isinstance(e, dict))[:200]
    return response.reason or ""


def send(session: requests.Session, method: str, url: str, *, what: str, credential: str,
         limiter: RateLimiter, policy: RetryPolicy, log=None, accept: tuple[int, ...] = (),
         **kwargs) -> requests.Response:
    """One API call with rate limiting and retries; statuses in ``accept`` are answers, not errors.

    429 waits for ``Retry-After`` (or backs off when absent); 5xx, timeouts and dropped connections back off
    exponentially with jitter, up to ``policy.max_attempts``; 401/403 fail at once naming ``credential``.
    """
    last = ""
    for attempt in range(1, policy.max_attempts + 1):
        limiter.acquire()
        try:
            response = session.request(method, url, timeout=policy.timeout_s, **kwargs)
        except requests.Timeout:
            last, wait = f"no answer within {policy.timeout_s:g} s", policy.delay(attempt)
        except requests.ConnectionError:
            last, wait = "connection failed or was dropped", policy.delay(attempt)
        else:
            status = response.status_code
            if status in (401, 403):
                raise CredentialError(
                    f"{what} rejected the credentials ({status} {_error_text(response)}); "
                    f"set {credential} to a valid token with the required permissions"
                )
            if status < 400 or status in accept:
                return response
            if status == 429:
                retry_after = _retry_after(response)
                wait = retry_after if retry_after is not None else policy.delay(attempt)
                limiter.hold(wait)
                last = f"429 rate limited (Retry-After {retry_after if retry_after is not None else 'absent'})"
            elif status >= 500:
                last, wait = f"{status} {_error_text(response)}", policy.delay(attempt)
            else:
                raise PublishError(f"{what} refused the request: {status} {_error_text(response)}")
        if log:
            log.warning("%s: attempt %d/%d: %s", what, attempt, policy.max_attempts, last)
        if attempt < policy.max_attempts:
            time.sleep(wait)
    raise PublishError(f"{what} failed after {policy.max_attempts} attempts: {last}")


# ---------------------------------------------------------------------------------------------------------
# Pinata
# ---------------------------------------------------------------------------------------------------------


class PinataClient:
    def __init__(self, settings: Settings, limiter: RateLimiter, policy: RetryPolicy, log=None):
        self.settings, self.limiter, self.policy, self.log = settings, limiter, policy, log
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {settings.pinata_jwt}"

    def upload(self, data: bytes, name: str, keyvalues: dict[str, str]) -> dict:
        """Upload one file publicly; return Pinata's ``data`` object."""
        form = {"network": "public", "name": name, "keyvalues": json.dumps(keyvalues, sort_keys=True)}
        if self.settings.pinata_group_id:
            form["group_id"] = self.settings.pinata_group_id
        response = send(
            self.session, "POST", self.settings.pinata_upload_url, what="Pinata upload", credential="PINATA_JWT",
            limiter=self.limiter, policy=self.policy, log=self.log,
            data=form, files={"file": (name, data, "image/png")},
        )
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise PublishError("Pinata upload answered 200 without a data object") from None


# ---------------------------------------------------------------------------------------------------------
# Cloudflare KV
# ---------------------------------------------------------------------------------------------------------


class KVClient:
    def __init__(self, settings: Settings, limiter: RateLimiter, policy: RetryPolicy, log=None):
        self.settings, self.limiter, self.policy, self.log = settings, limiter, policy, log
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {settings.cloudflare_api_token}"
        self.base = (f"{settings.cloudflare_api_url}/accounts/{quote(settings.cloudflare_account_id, safe='')}"
                     f"/storage/kv/namespaces/{quote(settings.kv_namespace_id, safe='')}")

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        return send(self.session, method, self.base + path, what="Cloudflare KV", credential="CLOUDFLARE_API_TOKEN",
                    limiter=self.limiter, policy=self.policy, log=self.log, **kwargs)

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it does not exist (404, code 10009)."""
        response = self._send("GET", f"/values/{quote(key, safe='')}", accept=(404,))
        if response.status_code == 404:
            try:
                codes = {e.get("code") for e in response.json().get("errors", [])}
            except (ValueError, AttributeError):
                codes = set()
            if 10009 in codes:  # key not found
                return None
            raise PublishError(f"Cloudflare KV answered 404 ({_error_text(response)}); "
                               "check CLOUDFLARE_ACCOUNT_ID and KV_NAMESPACE_ID")
        return response.content.decode("utf-8")

    def put_many(self, values: dict[str, str]) -> None:
        """Write ``values`` through the bulk API, retrying keys reported unsuccessful.

        Each key appears once per request; a retried key waits at least a second since its last write
        attempt, KV's limit for one key.
        """
        pending = dict(values)
        for attempt in range(1, self.policy.max_attempts + 1):
            failed: dict[str, str] = {}
            keys = sorted(pending)
            for i in range(0, len(keys), KV_BULK_LIMIT):
                chunk = keys[i : i + KV_BULK_LIMIT]
                body = [{"key": k, "value": pending[k]} for k in chunk]
                sent_at = time.monotonic()
                result = self._send("PUT", "/bulk", json=body).json().get("result") or {}
                for key in result.get("unsuccessful_keys") or []:
                    if key in pending:
                        failed[key] = pending[key]
            if not failed:
                return
            if self.log:
                self.log.warning("Cloudflare KV: %d key(s) unsuccessful, retrying", len(failed))
            pending = failed
            since_write = time.monotonic() - sent_at
            time.sleep(max(KV_SAME_KEY_INTERVAL_S + 0.05 - since_write, 0) + self.policy.delay(attempt))
        raise PublishError(f"Cloudflare KV kept refusing {len(pending)} key(s), e.g. {sorted(pending)[0]!r}")


# ---------------------------------------------------------------------------------------------------------
# Receipts and KV documents
# ---------------------------------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_receipt(meta: dict, data: bytes, cid: str, pinned: dict | None) -> dict:
    """The receipt of one chart: where it lives on IPFS, what it is, and whether it was uploaded."""
    receipt = {
        "cid": cid,
        "ipfs_url": f"ipfs://{cid}",
        "size": len(data),
        "sha256": sha256_hex(data),
        "uploaded": pinned is not None,
        "pinata_id": pinned.get("id") if pinned else None,
        "uploaded_at": pinned.get("uploaded_at") if pinned else None,
        "metadata": meta,
    }
    return receipt


KV_METADATA_FIELDS = ("filename", "sensor_type", "interval", "data_points", "processing_time", "start_time",
                      "end_time")


def kv_value(receipt: dict, updated_at: float) -> str:
    """The KV value layout of the service this replaces (``updated_at`` is unix seconds as a string)."""
    meta = receipt["metadata"]
    return json.dumps(
        {"ipfs_url": receipt["ipfs_url"], "updated_at": str(int(updated_at)),
         "metadata": {k: meta[k] for k in KV_METADATA_FIELDS}},
        sort_keys=False,
    )


def period_end(value: dict | str) -> datetime:
    meta = value["metadata"] if isinstance(value, dict) else json.loads(value)["metadata"]
    return datetime.fromisoformat(meta["end_time"]).astimezone(timezone.utc)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Chart:
    png: Path
    meta: dict

    @property
    def name(self) -> str:
        return f"{self.meta['sensor_type']}_{self.meta['interval']}_{self.meta['stamp']}.png"


def upload_charts(charts: list[Chart], pinned_dir: str | os.PathLike, settings: Settings, limiter: RateLimiter,
                  policy: RetryPolicy, threads: int = 4, log=None) -> tuple[dict[str, dict], dict[str, int]]:
    """Upload ``charts`` (unless already pinned); return their receipts, by chart key in the charts' order
    (the content of a receipts file), and counts.

    ``pinned_dir`` keeps one record per CID that Pinata has confirmed, written the moment the upload
    succeeds. A job that fails writes no receipts, but these records stay, so the next run uploads only
    the charts that are still missing, and identical bytes are never uploaded twice.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .cid import cid_v0, cid_v1, cid_version

    pinned_dir = Path(pinned_dir)
    client = PinataClient(settings, limiter, policy, log) if settings.uploads_enabled else None
    counts = {"uploaded": 0, "already_pinned": 0, "local_only": 0}
    receipts: dict[str, dict] = {}
    counts_lock = threading.Lock()

    def one(chart: Chart) -> None:
        data = chart.png.read_bytes()
        cid = cid_v1(data)
        record_path = pinned_dir / f"{cid}.json"
        pinned = json.loads(record_path.read_text()) if record_path.exists() else None
        outcome = "already_pinned" if pinned else "local_only"
        if pinned is None and client is not None:
            meta = chart.meta
            answer = client.upload(data, chart.name, {"sensor": meta["sensor_type"], "interval": meta["interval"],
                                                      "stamp": meta["stamp"]})
            answered = str(answer.get("cid", ""))
            local = cid if cid_version(answered) == 1 else cid_v0(data)
            if answered != local:
                raise PublishError(f"Pinata answered CID {answered} for {chart.name}, but its bytes give {local}")
            pinned = {"cid": cid, "pinata_cid": answered, "id": answer.get("id"), "uploaded_at": utc_now_iso(),
                      "network": answer.get("network"), "group_id": answer.get("group_id"),
                      "is_duplicate": answer.get("is_duplicate")}
            write_json_atomic(pinned, record_path)
            outcome = "uploaded"
        receipt = make_receipt(chart.meta, data, cid, pinned)
        with counts_lock:
            receipts[chart_key(chart.meta)] = receipt
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
    order = [chart_key(chart.meta) for chart in charts]
    return {key: receipts[key] for key in order}, counts


def chart_key(meta: dict, which: str | None = None) -> str:
    return f"{meta['sensor_type']}:{meta['interval']}:{which or meta['stamp']}"


def read_receipts(paths) -> list[dict]:
    """Every chart's receipt in the receipts files ``paths`` (each maps chart keys to receipts)."""
    return [receipt for path in paths for receipt in json.loads(Path(path).read_text(encoding="utf-8")).values()]


def publish_index(receipt_paths: list[str], state_path: str | os.PathLike, settings: Settings,
                  limiter: RateLimiter, policy: RetryPolicy, log=None, now: float | None = None) -> dict:
    """Index uploaded charts in KV: a dated key per chart and ``{sensor}:{interval}:latest``.

    Only keys whose CID differs from what this deployment last wrote (``state_path``) are written.
    ``latest`` moves only forward: it is replaced only by a chart whose period ends no earlier than the
    one KV points to now. Without Pinata or Cloudflare credentials nothing is sent, and the documents
    that would be written are returned for the run's record.
    """
    now = time.time() if now is None else now
    state_path = Path(state_path)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    receipts = read_receipts(receipt_paths)
    live = settings.uploads_enabled and not settings.index_missing

    def value_of(receipt: dict) -> str:
        uploaded = receipt.get("uploaded_at")
        stamp = datetime.fromisoformat(uploaded).timestamp() if uploaded else now
        return kv_value(receipt, stamp)

    documents: dict[str, str] = {}
    newest: dict[str, dict] = {}
    for receipt in receipts:
        key = chart_key(receipt["metadata"])
        if state.get(key) != receipt["cid"]:
            documents[key] = value_of(receipt)
        latest = chart_key(receipt["metadata"], "latest")
        order = (period_end(receipt), receipt["metadata"]["stamp"])
        if latest not in newest or order > (period_end(newest[latest]), newest[latest]["metadata"]["stamp"]):
            newest[latest] = receipt

    kv = KVClient(settings, limiter, policy, log) if live else None
    kept_back: dict[str, str] = {}
    for key, receipt in sorted(newest.items()):
        if state.get(key) == receipt["cid"]:
            continue
        current = kv.get(key) if kv else None
        if current is not None:
            current_value = json.loads(current)
            if current_value.get("ipfs_url") == receipt["ipfs_url"]:
                continue
            if period_end(current_value) > period_end(receipt):
                kept_back[key] = current_value["metadata"]["end_time"]  # never move latest backwards
                continue
        documents[key] = value_of(receipt)

    if kv and documents:
        kv.put_many(documents)
        for key, value in documents.items():
            state[key] = json.loads(value)["ipfs_url"].removeprefix("ipfs://")
        write_json_atomic(state, state_path)
    return {
        "written_to_kv": bool(kv),
        "keys": len(documents),
        "latest_kept_because_newer": kept_back,
        "documents": {key: json.loads(value) for key, value in sorted(documents.items())},
    }
