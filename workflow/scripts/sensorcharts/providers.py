"""The two providers' APIs: Pinata (IPFS pinning, v3) and Cloudflare Workers KV, with their settings, one
shared request budget, retries, and errors a person can act on.

Secrets come from the environment or a ``.env`` file and are never logged, written or put in an error
message: errors name the variable to fix, not its value. TLS verification is never turned off; a plain
``http://`` endpoint is accepted only on a loopback address (a local test double).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

PINATA_UPLOAD_URL = "https://uploads.pinata.cloud/v3/files"
PINATA_API_URL = "https://api.pinata.cloud"  # deleting and listing files
CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
KV_BULK_LIMIT = 10_000  # pairs per bulk request (Cloudflare's limit)
KV_SAME_KEY_INTERVAL_S = 1.0  # KV accepts one write per second to the same key
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class PublishError(RuntimeError):
    """A failure a person must act on; the message never contains a secret."""


class CredentialError(PublishError):
    """401/403: retrying is pointless; the message names the variable to fix."""


class KVLimitReached(PublishError):
    """Cloudflare answered error 10048: the account's daily allowance for this operation is used up until
    00:00 UTC (the free plan's 1,000 writes or deletes a day). Retrying before then is pointless."""


KV_DAILY_LIMIT_CODE = 10048


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
    pinata_api_url: str = PINATA_API_URL
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
            pinata_api_url=_endpoint(get("PINATA_API_URL") or PINATA_API_URL, "PINATA_API_URL"),
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
    """At most ``per_minute`` requests in any 60 seconds, for every thread and process sharing it.

    A sliding window, as the providers count: a burst (a cron run's dozen uploads and deletes, a backfill's
    folders) goes at once while the window has room, and a long run settles at the rate. With ``path``, the
    window lives in that file under an exclusive ``flock``, so concurrent jobs on one machine share one
    budget (the Snakemake resource ``pinata`` caps how many run at once). ``clock`` and ``sleep`` are the
    wall clock (shared between processes) and ``time.sleep``; tests hand in their own.
    """

    def __init__(self, per_minute: float, path: str | os.PathLike | None = None, clock=time.time, sleep=time.sleep):
        self.capacity = max(1, int(per_minute))
        self.window = 60.0 * self.capacity / per_minute  # per_minute < 1: one request per 60/per_minute s
        self.path = Path(path) if path else None
        self.clock, self.sleep = clock, sleep
        self.state = {"sent": [], "blocked_until": 0.0}
        self.lock = threading.Lock()

    def _update(self, change) -> float:
        """Apply ``change(state, now) -> seconds to wait`` to the shared state, under the locks."""
        with self.lock:
            if self.path is None:
                return change(self.state, self.clock())
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.seek(0)
                try:
                    state = json.loads(handle.read() or "{}")
                    state = {"sent": [float(t) for t in state["sent"]], "blocked_until": float(state["blocked_until"])}
                except (ValueError, KeyError, TypeError):  # empty, or written by another version
                    state = {"sent": [], "blocked_until": 0.0}
                wait = change(state, self.clock())
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(state))
                return wait

    def _take(self, state: dict, now: float) -> float:
        sent = [t for t in state["sent"] if t > now - self.window]
        wait = max(state["blocked_until"] - now, min(sent) + self.window - now if len(sent) >= self.capacity else 0.0)
        if wait <= 0:
            sent.append(now)
        state["sent"] = sent[-self.capacity:]
        return wait

    def acquire(self) -> None:
        while (wait := self._update(self._take)) > 0:
            self.sleep(wait)

    def hold(self, seconds: float) -> None:
        """Keep everyone waiting ``seconds`` (a 429's Retry-After applies to the whole account)."""
        def block(state: dict, now: float) -> float:
            state["blocked_until"] = max(state["blocked_until"], now + seconds)
            return 0.0

        self._update(block)


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


def _error_codes(response: requests.Response) -> set:
    """The ``code`` of each error in a Cloudflare envelope (empty for any other body)."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return set()
    return {e.get("code") for e in errors if isinstance(e, dict)} if isinstance(errors, list) else set()


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
         final=None, **kwargs) -> requests.Response:
    """One API call with rate limiting and retries; statuses in ``accept`` are answers, not errors.

    429 waits for ``Retry-After`` (or backs off when absent); 5xx, timeouts and dropped connections back off
    exponentially with jitter, up to ``policy.max_attempts``; 401/403 fail at once naming ``credential``.
    ``final(response)`` may return an exception to raise at once, whatever the status (an answer that no
    retry can change).
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
            refusal = final(response) if final and status >= 400 else None
            if refusal is not None:
                raise refusal
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
    """Pinata's v3 files API: upload one file or a folder (as a CAR), delete a file or folder by its id."""

    def __init__(self, settings: Settings, limiter: RateLimiter, policy: RetryPolicy, log=None):
        self.settings, self.limiter, self.policy, self.log = settings, limiter, policy, log
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {settings.pinata_jwt}"

    def _send(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        return send(self.session, method, url, what=what, credential="PINATA_JWT", limiter=self.limiter,
                    policy=self.policy, log=self.log, **kwargs)

    def _upload(self, name: str, data: bytes, content_type: str, keyvalues: dict[str, str], **extra) -> dict:
        form = {"network": "public", "name": name, "keyvalues": json.dumps(keyvalues, sort_keys=True), **extra}
        if self.settings.pinata_group_id:
            form["group_id"] = self.settings.pinata_group_id
        response = self._send("POST", self.settings.pinata_upload_url, "Pinata upload", data=form,
                              files={"file": (name, data, content_type)})
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise PublishError("Pinata upload answered 200 without a data object") from None

    def upload(self, data: bytes, name: str, keyvalues: dict[str, str]) -> dict:
        """Upload one PNG publicly; return Pinata's ``data`` object (``id``, ``cid``, …)."""
        return self._upload(name, data, "image/png", keyvalues)

    def upload_car(self, car: bytes, name: str, keyvalues: dict[str, str]) -> dict:
        """Upload a CAR file publicly (``car=true``): Pinata keeps the DAG and its root as given, so the folder's
        CID is the one computed here. Return Pinata's ``data`` object."""
        return self._upload(name, car, "application/vnd.ipld.car", keyvalues, car="true")

    def delete(self, file_id: str) -> bool:
        """Delete a public file or folder by its id (not its CID). True when deleted now, False when Pinata
        no longer knew it (404): either way it is gone, so deleting twice is harmless."""
        url = f"{self.settings.pinata_api_url}/v3/files/public/{quote(file_id, safe='')}"
        return self._send("DELETE", url, "Pinata delete", accept=(404,)).status_code != 404


# ---------------------------------------------------------------------------------------------------------
# Cloudflare KV
# ---------------------------------------------------------------------------------------------------------


KV_NO_SUCH_NAMESPACE = {7003, 10013}  # "could not route" (account), "namespace not found"


def _kv_refusal(response: requests.Response) -> PublishError | None:
    """Answers no retry can change: the daily limit (any status), an account or namespace that is not there."""
    codes = _error_codes(response)
    if KV_DAILY_LIMIT_CODE in codes:
        return KVLimitReached("Cloudflare KV's daily limit for this operation is used up until 00:00 UTC "
                              f"(error {KV_DAILY_LIMIT_CODE})")
    if response.status_code == 404 and codes & KV_NO_SUCH_NAMESPACE:
        return PublishError(f"Cloudflare KV answered 404 ({_error_text(response)}); "
                            "check CLOUDFLARE_ACCOUNT_ID and KV_NAMESPACE_ID")
    return None


class KVClient:
    """Cloudflare Workers KV's REST API for one namespace: read a key, bulk write, bulk delete."""

    def __init__(self, settings: Settings, limiter: RateLimiter, policy: RetryPolicy, log=None):
        self.settings, self.limiter, self.policy, self.log = settings, limiter, policy, log
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {settings.cloudflare_api_token}"
        self.base = (f"{settings.cloudflare_api_url}/accounts/{quote(settings.cloudflare_account_id, safe='')}"
                     f"/storage/kv/namespaces/{quote(settings.kv_namespace_id, safe='')}")

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        return send(self.session, method, self.base + path, what="Cloudflare KV", credential="CLOUDFLARE_API_TOKEN",
                    limiter=self.limiter, policy=self.policy, log=self.log, final=_kv_refusal, **kwargs)

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it does not exist (404, code 10009)."""
        response = self._send("GET", f"/values/{quote(key, safe='')}", accept=(404,))
        if response.status_code == 404:
            if 10009 in _error_codes(response):  # key not found
                return None
            raise PublishError(f"Cloudflare KV answered 404 ({_error_text(response)}); "
                               "check CLOUDFLARE_ACCOUNT_ID and KV_NAMESPACE_ID")
        return response.content.decode("utf-8")

    def _bulk(self, method: str, path: str, items: list, keys: list[str], written) -> list[str]:
        """Send ``items`` (one request per 10,000); call ``written(keys done, pairs billed)`` after each
        answer; return the keys reported unsuccessful."""
        failed: list[str] = []
        for i in range(0, len(items), KV_BULK_LIMIT):
            chunk, chunk_keys = items[i : i + KV_BULK_LIMIT], keys[i : i + KV_BULK_LIMIT]
            result = self._send(method, path, json=chunk).json().get("result") or {}
            refused = set(result.get("unsuccessful_keys") or []) & set(chunk_keys)
            failed += [k for k in chunk_keys if k in refused]
            written([k for k in chunk_keys if k not in refused], len(chunk))
        return failed

    def put_many(self, values: dict[str, str], written=lambda keys, billed: None) -> None:
        """Write ``values`` through the bulk API, retrying keys reported unsuccessful.

        ``written(keys, billed)`` is called after every answer with the keys stored and the pairs sent (each
        pair counts as a write, stored or not), so a caller keeps its books even when a later request
        fails. A retried key waits at least a second since its last write attempt, KV's limit for one key.
        """
        pending = dict(values)
        for attempt in range(1, self.policy.max_attempts + 1):
            keys = sorted(pending)
            sent_at = time.monotonic()
            failed = self._bulk("PUT", "/bulk", [{"key": k, "value": pending[k]} for k in keys], keys, written)
            if not failed:
                return
            if self.log:
                self.log.warning("Cloudflare KV: %d key(s) unsuccessful, retrying", len(failed))
            pending = {k: pending[k] for k in failed}
            since_write = time.monotonic() - sent_at
            time.sleep(max(KV_SAME_KEY_INTERVAL_S + 0.05 - since_write, 0) + self.policy.delay(attempt))
        raise PublishError(f"Cloudflare KV kept refusing {len(pending)} key(s), e.g. {sorted(pending)[0]!r}")

    def delete_many(self, keys: list[str], deleted=lambda keys, billed: None) -> list[str]:
        """Delete ``keys`` through the bulk API (a missing key is no error); ``deleted(keys, billed)`` as
        ``put_many``'s callback. Return the keys reported unsuccessful (a later run tries them again)."""
        keys = sorted(keys)
        return self._bulk("POST", "/bulk/delete", keys, keys, deleted)
