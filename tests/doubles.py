"""Local HTTP doubles of Pinata's v3 files API (with a gateway) and the Cloudflare Workers KV REST API.

Each double is a real HTTP server on 127.0.0.1 (a free port chosen by the OS), served by a
``ThreadingHTTPServer`` on a background thread from construction until ``close()`` (or the end of its
``with`` block). It speaks HTTP/1.1 with keep-alive, validates requests the way the real service is
documented to (``docs/ipfs-and-providers.md`` has the facts and their public sources), REJECTS what the
real service rejects, and counts what the providers' plans limit (files pinned, KV operations a day), so a
client tested against it proves something.

    with PinataDouble(jwt="test-jwt") as pinata:  # pinata.url is what PINATA_UPLOAD_URL is set to;
        ...                                         # pinata.api_url stands in for https://api.pinata.cloud
    with KVDouble(token="test-cf-token", account="acct123", namespace="ns456") as kv:
        ...                                         # kv.url is what CLOUDFLARE_API_URL is set to

Common to both:

* ``requests`` lists every request received, in the order the double decided its answer:
  ``{"method", "path", "status"}``; ``path`` is the request path as sent (still percent-encoded) without
  the query string; ``status`` is ``None`` for the ``"drop"`` and ``"timeout"`` faults (no answer reached
  the client). Entries, uploads, stored values and writes are recorded *before* the answer is sent, so a
  test may assert on them as soon as its client call returns.
* ``inject(*faults)`` queues faults, validated at once (``ValueError`` for an unknown one; which requests
  consume them: see each double):

  ``"429:N"``  429 with ``Retry-After: N`` and the service's error body; ``"429"`` the same without
  ``Retry-After``; ``"500"``, ``"503"`` that status with the service's JSON error shape; ``"502"`` a
  502 with an HTML page, as a gateway in front of either service answers (clients must not assume
  an error body is JSON); ``"401"``/``"403"`` the service's credential failure; ``"timeout"`` read the
  request, then wait 30 s (or until the double closes) before answering 504 — other requests are
  served meanwhile; ``"drop"`` read the request, then close the connection with no response at all.
  A fault replaces the normal handling of the request that consumes it: nothing is stored.

Pinata (``PinataDouble``): see its docstring. Cloudflare KV (``KVDouble``): see its docstring.

Error codes and messages are the documented ones where the documentation names them (Pinata's v3
``{"error": {"code", "message"}}``; KV 10000, 6003, 10009, 971, 10048) and otherwise follow the public list
of KV API codes (10012 malformed value, 10013 namespace not found, 10022 too many requests, 10024 payload
too large, 10028 invalid limit argument); client code should branch on HTTP status, not on them, except
KV's 10048 (the daily limit of a free plan), whose HTTP status is not documented.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import re
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from ipld_reader import CID, Dag, IPLDError, read_car

__all__ = ["PinataDouble", "KVDouble", "SettableClock", "cid_v1_raw", "cid_v0_single_chunk", "CHUNK_SIZE"]

CHUNK_SIZE = 262_144  # Kubo's default fixed-size chunk: files up to this size are one block
TIMEOUT_FAULT_SECONDS = 30.0


class SettableClock:
    """A clock for the doubles' ``clock`` (epoch seconds) that tests move by hand, e.g. across 00:00 UTC:
    ``clock = SettableClock(datetime(2025, 5, 1, 23, 59, tzinfo=timezone.utc))``, ``clock.advance(60)``,
    ``clock.set(datetime(...))``."""

    def __init__(self, when: datetime | float) -> None:
        self.set(when)

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime | float) -> None:
        if isinstance(when, datetime) and when.tzinfo is None:
            raise ValueError("SettableClock: give an aware datetime (UTC), not a naive one")
        self.now = when.timestamp() if isinstance(when, datetime) else float(when)

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------------------------- CIDs
# Computed here, independently of the project's code.

_SHA2_256_MULTIHASH_PREFIX = b"\x12\x20"  # multihash code sha2-256, digest length 32


def cid_v1_raw(data: bytes) -> str:
    """CIDv1, raw codec (0x55), sha2-256, multibase base32 lower: the CID of a single-chunk file."""
    binary = b"\x01\x55" + _SHA2_256_MULTIHASH_PREFIX + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode("ascii").lower().rstrip("=")


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58btc(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | 0) + _varint(value)


def _pb_bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def cid_v0_single_chunk(data: bytes) -> str:
    """CIDv0 (``Qm…``) of a file of at most one chunk, as ``ipfs add --cid-version=0`` makes it.

    The block is a dag-pb ``PBNode{Data: UnixFS Data{Type=File(2), Data=bytes, filesize=len}}`` with no
    links; the CID is base58btc(multihash(sha2-256(block))). Protobuf omits the empty ``Data`` bytes.
    """
    if len(data) > CHUNK_SIZE:
        raise ValueError("cid_v0_single_chunk: more than one chunk")
    unixfs = _pb_varint_field(1, 2)  # Type = File
    if data:
        unixfs += _pb_bytes_field(2, data)
    unixfs += _pb_varint_field(3, len(data))  # filesize
    node = _pb_bytes_field(1, unixfs)  # PBNode.Data (field 1); no Links (field 2)
    return _base58btc(_SHA2_256_MULTIHASH_PREFIX + hashlib.sha256(node).digest())


# ---------------------------------------------------------------------------------------- multipart


class BadRequest(Exception):
    """A request the double answers with 400 (or ``status``)."""

    def __init__(self, message: str, status: int = 400, code: int | None = None):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass
class FormPart:
    name: str | None
    filename: str | None
    content_type: str | None
    content: bytes
    disposition: str | None = None


def content_type_of(value: str | None) -> tuple[str, dict]:
    """(lower-case media type, parameters) of a Content-Type header value; ("", {}) when absent."""
    if not value:
        return "", {}
    msg = EmailMessage()
    msg["Content-Type"] = value
    params = {k.lower(): v for k, v in (msg.get_params() or [])[1:]}
    return msg.get_content_type(), params


def parse_multipart(body: bytes, content_type: str | None) -> list[FormPart]:
    """Parse a ``multipart/form-data`` body strictly (RFC 7578 / 2046); ``BadRequest`` on any defect."""
    media_type, params = content_type_of(content_type)
    if media_type != "multipart/form-data":
        raise BadRequest(f"expected a multipart/form-data body, got {content_type or 'no Content-Type'!r}")
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 70:
        raise BadRequest("multipart/form-data without a valid boundary")
    delim = b"--" + boundary.encode("latin-1")
    if body.startswith(delim):
        pos = len(delim)
    else:
        first = body.find(b"\r\n" + delim)
        if first < 0:
            raise BadRequest("multipart body without an opening boundary")
        pos = first + 2 + len(delim)
    parts: list[FormPart] = []
    while True:
        if body.startswith(b"--", pos):  # close delimiter; the epilogue is ignored
            return parts
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise BadRequest("malformed multipart boundary line")
        start = eol + 2
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise BadRequest("multipart body without a closing boundary")
        raw = body[start:end]
        if raw.startswith(b"\r\n"):
            head, content = b"", raw[2:]
        else:
            sep = raw.find(b"\r\n\r\n")
            if sep < 0:
                raise BadRequest("multipart part without a blank line after its headers")
            head, content = raw[:sep], raw[sep + 4 :]
        headers = BytesParser(policy=policy.default).parsebytes(head + b"\r\n\r\n", headersonly=True)
        if headers.defects:
            raise BadRequest("malformed multipart part headers")
        disposition = headers.get_content_disposition()
        if disposition != "form-data":
            raise BadRequest("multipart part without Content-Disposition: form-data")
        name = headers.get_param("name", header="content-disposition")
        parts.append(
            FormPart(
                name=name if isinstance(name, str) else None,
                filename=headers.get_filename(),
                content_type=headers.get_content_type() if "content-type" in headers else None,
                content=content,
                disposition=disposition,
            )
        )
        pos = end + 2 + len(delim)


# ------------------------------------------------------------------------------------ HTTP plumbing


@dataclass
class Request:
    method: str
    path: str  # as sent, percent-encoded, without the query
    query: dict[str, list[str]]
    headers: object  # http.client.HTTPMessage
    body: bytes = b""


@dataclass
class Response:
    status: int | None  # None: no response (drop / timeout fault)
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, obj, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode("utf-8"), "application/json", headers or {})


_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)

_COMMON_FAULT = re.compile(r"429(:\d+)?|500|502|503|401|403|timeout|drop")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still waiting out a "timeout" fault never blocks close()

    def server_bind(self):  # HTTPServer's own would ask DNS for the host's fqdn; not needed here
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):  # a client that went away is not an error
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    double: "_HTTPDouble"

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length else b""

    def _handle(self):
        double = self.double
        path, _, query = self.path.partition("?")
        req = Request(self.command, path, parse_qs(query, keep_blank_values=True), self.headers)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._send(double._finish(req, double._error(400, "invalid Content-Length")), close=True)
            return
        fault = double._take_fault(req)
        early = None if fault else double._before_body(req, length)
        if early is not None:  # answered without reading the body: the connection cannot be reused
            self._send(double._finish(req, early), close=True)
            return
        try:
            req.body = self._read_body()
        except ValueError:
            self._send(double._finish(req, double._error(400, "malformed chunked body")), close=True)
            return
        if fault == "drop":
            double._finish(req, Response(None))
            self.close_connection = True
            return
        if fault == "timeout":
            double._finish(req, Response(None))
            if double._closed.wait(TIMEOUT_FAULT_SECONDS):
                self.close_connection = True
                return
            self._send(double._fault_response("504"))
            return
        if fault:
            response = double._fault_response(fault)
        else:
            try:
                response = double._respond(req)
            except BadRequest as exc:
                response = double._error(exc.status, exc.message, exc.code)
            except Exception as exc:  # a bug in the double: say so loudly, answer 500
                traceback.print_exc()
                response = double._error(500, f"test double error: {exc!r}")
        self._send(double._finish(req, response))

    def _send(self, response: Response, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class _HTTPDouble:
    """Server lifecycle, fault queue and request log shared by both doubles."""

    _fault_pattern = _COMMON_FAULT

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._faults: deque[str] = deque()
        self._lock = threading.RLock()
        self._closed = threading.Event()
        handler = type(f"{type(self).__name__}Handler", (_Handler,), {"double": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.host, self.port = self._server.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    # lifecycle
    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()  # wakes handlers waiting out a "timeout" fault
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # faults
    def inject(self, *faults) -> None:
        for fault in faults:
            if not self._valid_fault(fault):
                raise ValueError(f"{type(self).__name__}: unknown fault {fault!r}")
        with self._lock:
            self._queue(faults)

    def _valid_fault(self, fault) -> bool:
        return isinstance(fault, str) and bool(self._fault_pattern.fullmatch(fault))

    def _queue(self, faults) -> None:  # called with the lock held
        self._faults.extend(faults)

    def _consumes_faults(self, req: Request) -> bool:
        return True

    def _take_fault(self, req: Request) -> str | None:
        with self._lock:
            if self._faults and self._consumes_faults(req):
                return self._faults.popleft()
        return None

    def _fault_response(self, fault: str) -> Response:
        status, _, retry_after = fault.partition(":")
        if status == "502":
            return Response(502, _BAD_GATEWAY_HTML, "text/html")
        response = self._fault_body(int(status))
        if retry_after:
            response.headers["Retry-After"] = retry_after
        return response

    def _finish(self, req: Request, response: Response) -> Response:
        with self._lock:
            self.requests.append({"method": req.method, "path": req.path, "status": response.status})
        return response

    # per service
    def _before_body(self, req: Request, length: int) -> Response | None:
        return None

    def _respond(self, req: Request) -> Response:
        raise NotImplementedError

    def _error(self, status: int, message: str, code: int | None = None) -> Response:
        raise NotImplementedError

    def _fault_body(self, status: int) -> Response:
        raise NotImplementedError


def _bearer(headers) -> tuple[str, str | None]:
    """("missing"|"scheme"|"ok", token) from the Authorization header."""
    value = headers.get("Authorization")
    if value is None:
        return "missing", None
    scheme, sep, token = value.partition(" ")
    if not sep or scheme.lower() != "bearer" or not token:
        return "scheme", None
    return "ok", token


# --------------------------------------------------------------------------------------------- Pinata


class PinataDouble(_HTTPDouble):
    """Pinata's v3 files API and a gateway, on one server: ``url`` stands in for
    ``https://uploads.pinata.cloud/v3/files``, ``api_url`` for ``https://api.pinata.cloud`` and ``gateway_url``
    for a gateway's ``https://…/ipfs``. Every other method or path answers 404.

    Endpoints (``Authorization: Bearer <jwt>`` on all but the gateway: a missing header, another scheme or
    another token answers 401 ``{"error": {"code": 401, "message": …}}``; other v3 errors have the same shape):

    * ``POST /v3/files``: an upload. The body must be ``multipart/form-data`` with exactly one ``file`` part
      carrying a filename (none, or several — a folder — answer 400), ``network`` ``public``/``private``
      (absent: private, the service's default), optional ``name`` (default: the filename), ``group_id``,
      ``keyvalues`` (a JSON string of string→string pairs) and ``car`` (``true``/``false``). A repeated text
      field is a 400. Without ``car`` the CID is computed here: CIDv1 raw leaf (``bafkrei…``, the default,
      ``cid_version("v1")``) or CIDv0 (``Qm…``, ``cid_version("v0")``); LIMITATION: only single-chunk files
      (≤ 262,144 bytes) are supported, a larger one answers 400 "double supports single-chunk files only".
      With ``car=true`` the file must be a CARv1 (read by ``ipld_reader``, independent of the project's code):
      the header, the varint-framed sections, every block's bytes hashing to its CID (sha2-256; raw and dag-pb
      blocks only), and every block under the root present, dag-pb blocks decoded strictly; anything else
      answers 400 and pins nothing. The answer's ``cid`` is the root as given, ``number_of_files`` the files
      in the folder (1 for a file). CHOICES: exactly one root (several answer 400); blocks not under the root
      are ignored; ``size`` is the total bytes of the distinct blocks under the root; HAMT-sharded folders
      are refused (400: the double does not read them).
    * ``GET /v3/files/{network}``: the pinned files of that network, newest first, ``{"data": {"files": [{"id",
      "name", "cid", "size", "number_of_files", "mime_type", "group_id", "keyvalues", "created_at"}],
      "next_page_token"}}``. Filters ``cid``, ``name``, ``group`` (a group id), ``keyvalues[k]=v``: CHOICE,
      exact matches. ``limit`` 1–1000 (default 10; else 400); ``pageToken`` the last answer's
      ``next_page_token`` (``""`` on the last page; an unknown token answers 400).
    * ``GET /v3/files/{network}/{id}``: ``{"data": <that file>}``, 404 when not pinned on that network.
    * ``DELETE /v3/files/{network}/{id}``: unpins; 200 ``{"data": null}`` (the documented example), 404 for an
      id that is unknown, on the other network or already deleted. ``{id}`` is the upload's id, not its CID.
    * ``GET /data/userPinnedDataTotal``: ``{"pin_count", "pin_size_total", "pin_size_with_replications_total"}``
      of what is pinned now (an endpoint of the legacy API: its errors are ``{"error": {"reason",
      "details"}}``).
    * ``GET /ipfs/{cid}[/path]``, no auth: the bytes of a file of a pinned *public* upload (a folder's file by
      its path under the folder's CID, or any file or block CID inside a pinned DAG); 404 for anything not
      pinned now (deleted uploads no longer resolve), 501 for a folder itself (no listings).

    Plan quotas: ``file_limit`` (None: unlimited; the free plan's is 500) and ``storage_limit_bytes`` (None:
    unlimited; the free plan's is 1 GB). An upload that would make the pinned files more than ``file_limit``,
    or their bytes more than ``storage_limit_bytes``, is refused and pins nothing; deleting frees quota. A
    folder counts as one file. CHOICE (the reference names no status): ``quota_status`` (default 403) with
    ``{"error": {"code": <status>, "message": "…plan limit…"}}``; a duplicate upload is a new file and counts.

    State: ``files`` (id → record of what is pinned now: ``{"id", "name", "cid", "size", "number_of_files",
    "mime_type", "group_id", "keyvalues", "network", "created_at", "car"}``), ``deleted`` (ids, in order),
    ``uploads`` (every accepted upload: ``{"id", "name", "cid", "size", "network", "group_id", "keyvalues",
    "is_duplicate", "sha256"}``; ``sha256`` of the uploaded bytes, the CAR's for a CAR), ``pin_count``,
    ``pinned_most`` (the most files pinned at any moment), ``pinned_bytes``, ``requests``. ``clock`` (a callable
    returning epoch seconds, default ``time.time``) dates ``created_at``. ``is_duplicate``: CHOICE, a file with
    the same CID is pinned now.

    Faults: ``inject(*faults, endpoint=None)`` queues faults for the next request to any endpoint but the
    gateway, or, with ``endpoint`` one of ``"upload"``, ``"list"``, ``"get"``, ``"delete"``, ``"data"``, for
    the next request to that endpoint only.
    """

    PATH = "/v3/files"
    ENDPOINTS = ("upload", "list", "get", "delete", "data")
    LIST_LIMIT_MAX = 1000

    def __init__(
        self,
        jwt: str = "test-jwt",
        *,
        file_limit: int | None = None,
        storage_limit_bytes: int | None = None,
        clock=time.time,
    ) -> None:
        self.jwt = jwt
        self.file_limit, self.storage_limit_bytes = file_limit, storage_limit_bytes
        self.quota_status = 403
        self.clock = clock
        self.uploads: list[dict] = []
        self.files: dict[str, dict] = {}
        self.deleted: list[str] = []
        self.pinned_most = 0  # the most files pinned at any moment, mid-run included
        self._cid_version = "v1"
        self._blocks: dict[CID, bytes] = {}  # every block a CAR upload brought, for the gateway
        self._dag_cids: dict[str, set[CID]] = {}  # file id -> the CIDs its DAG holds
        self._raw_files: dict[str, bytes] = {}  # CID text -> bytes of a plain (non-CAR) upload
        super().__init__()
        self.url = self.base_url + self.PATH
        self.api_url = self.base_url
        self.gateway_url = self.base_url + "/ipfs"

    @property
    def pin_count(self) -> int:
        with self._lock:
            return len(self.files)

    @property
    def pinned_bytes(self) -> int:
        with self._lock:
            return sum(record["size"] for record in self.files.values())

    def cid_version(self, v: str) -> None:
        if v not in ("v0", "v1"):
            raise ValueError(f"cid_version: 'v0' or 'v1', not {v!r}")
        with self._lock:
            self._cid_version = v

    # ---- faults: (fault, endpoint or None), consumed by the first request to a matching endpoint
    def inject(self, *faults: str, endpoint: str | None = None) -> None:
        if endpoint is not None and endpoint not in self.ENDPOINTS:
            raise ValueError(f"PinataDouble: unknown endpoint {endpoint!r}, one of {self.ENDPOINTS}")
        super().inject(*[(fault, endpoint) for fault in faults])

    def _valid_fault(self, fault) -> bool:
        return isinstance(fault, tuple) and super()._valid_fault(fault[0])

    def _take_fault(self, req: Request) -> str | None:
        endpoint = self._endpoint(req)
        if endpoint is None:
            return None
        with self._lock:
            for index, (fault, wanted) in enumerate(self._faults):
                if wanted in (None, endpoint):
                    del self._faults[index]
                    return fault
        return None

    def _endpoint(self, req: Request) -> str | None:
        segments = req.path.split("/")[1:]
        if req.path == self.PATH:
            return "upload" if req.method == "POST" else None
        if segments[:2] == ["v3", "files"] and len(segments) == 3:
            return "list" if req.method == "GET" else None
        if segments[:2] == ["v3", "files"] and len(segments) == 4:
            return {"GET": "get", "DELETE": "delete"}.get(req.method)
        if req.path == "/data/userPinnedDataTotal":
            return "data" if req.method == "GET" else None
        return None

    # ---- answers
    def _error(self, status: int, message: str, code: int | None = None) -> Response:
        return _json(status, {"error": {"code": status, "message": message}})

    def _fault_body(self, status: int) -> Response:
        message = {
            401: "Unauthorized: the JWT is invalid, expired or revoked",
            403: "Forbidden: the key lacks the files:write scope",
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }[status]
        return self._error(status, message)

    @staticmethod
    def _listed(record: dict) -> dict:
        keys = ("id", "name", "cid", "size", "number_of_files", "mime_type", "group_id", "keyvalues", "created_at")
        return {key: record[key] for key in keys}

    def _respond(self, req: Request) -> Response:
        if req.path.startswith("/ipfs/") and req.method in ("GET", "HEAD"):
            return self._gateway(req)
        endpoint = self._endpoint(req)
        if endpoint is None:
            return self._error(404, "Not Found")
        state, token = _bearer(req.headers)
        if state != "ok" or token != self.jwt:
            if endpoint == "data":
                return _json(401, {"error": {"reason": "INVALID_CREDENTIALS", "details": "Invalid authentication"}})
            return self._error(401, "Unauthorized: missing or invalid Authorization Bearer token")
        if endpoint == "upload":
            return self._upload(req)
        if endpoint == "data":
            with self._lock:
                total = self.pinned_bytes
                return _json(200, {"pin_count": len(self.files), "pin_size_total": total,
                                   "pin_size_with_replications_total": total})
        segments = req.path.split("/")[1:]
        network = segments[2]
        if network not in ("public", "private"):
            raise BadRequest(f"network must be 'public' or 'private', not {network!r}")
        if endpoint == "list":
            return self._list(req, network)
        file_id = unquote(segments[3])
        with self._lock:
            record = self.files.get(file_id)
            if record is None or record["network"] != network:
                return self._error(404, f"file {file_id!r} not found on the {network} network")
            if endpoint == "get":
                return _json(200, {"data": self._listed(record)})
            del self.files[file_id]
            self._dag_cids.pop(file_id, None)
            self.deleted.append(file_id)
        return _json(200, {"data": None})

    def _list(self, req: Request, network: str) -> Response:
        def query(name):
            values = req.query.get(name)
            return values[-1] if values else None

        try:
            limit = int(query("limit") or 10)
        except ValueError:
            raise BadRequest(f"limit must be an integer, not {query('limit')!r}") from None
        if not 1 <= limit <= self.LIST_LIMIT_MAX:
            raise BadRequest(f"limit must be between 1 and {self.LIST_LIMIT_MAX}, not {limit}")
        wanted_keyvalues = {k[len("keyvalues[") : -1]: v[-1] for k, v in req.query.items()
                            if k.startswith("keyvalues[") and k.endswith("]")}
        with self._lock:
            chosen = [
                record for record in reversed(self.files.values())  # newest first
                if record["network"] == network
                and query("cid") in (None, record["cid"])
                and query("name") in (None, record["name"])
                and query("group") in (None, record["group_id"])
                and all(record["keyvalues"].get(k) == v for k, v in wanted_keyvalues.items())
            ]
        token = query("pageToken")
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
                start = [record["id"] for record in chosen].index(after) + 1
            except (ValueError, UnicodeError):
                raise BadRequest(f"invalid pageToken {token!r}") from None
            chosen = chosen[start:]
        page = chosen[:limit]
        more = len(chosen) > limit
        next_token = base64.urlsafe_b64encode(page[-1]["id"].encode()).decode("ascii") if more else ""
        return _json(200, {"data": {"files": [self._listed(r) for r in page], "next_page_token": next_token}})

    def _upload(self, req: Request) -> Response:
        parts = parse_multipart(req.body, req.headers.get("Content-Type"))
        files = [p for p in parts if p.name == "file"]
        if not files or any(not p.filename for p in files):
            raise BadRequest("file is required: one 'file' part with a filename")
        if len(files) > 1:
            raise BadRequest("only one file may be uploaded per request; folders are not accepted")
        fields: dict[str, str] = {}
        for part in parts:
            if part.name == "file" or part.name is None:
                continue
            if part.name in fields:
                raise BadRequest(f"form field {part.name!r} given more than once")
            try:
                fields[part.name] = part.content.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"form field {part.name!r} is not UTF-8 text") from None

        network = fields.get("network", "private")
        if network not in ("public", "private"):
            raise BadRequest(f"network must be 'public' or 'private', not {network!r}")
        keyvalues: dict[str, str] = {}
        if "keyvalues" in fields:
            try:
                keyvalues = json.loads(fields["keyvalues"])
            except ValueError:
                raise BadRequest("keyvalues must be a JSON string of an object") from None
            if not isinstance(keyvalues, dict) or not all(isinstance(v, str) for v in keyvalues.values()):
                raise BadRequest("keyvalues must be a JSON object of string to string pairs")
        car = fields.get("car", "false").lower()
        if car not in ("true", "false"):
            raise BadRequest("car must be 'true' or 'false'")

        upload = files[0]
        data = upload.content
        if car == "true":
            root, dag_cids, size, number_of_files = self._read_car(data)
            cid = str(root)
        else:
            if len(data) > CHUNK_SIZE:
                raise BadRequest(f"double supports single-chunk files only (at most {CHUNK_SIZE} bytes)")
            with self._lock:
                cid = cid_v0_single_chunk(data) if self._cid_version == "v0" else cid_v1_raw(data)
            dag_cids, size, number_of_files = set(), len(data), 1
        name = fields.get("name", upload.filename)
        mime_type = (
            upload.content_type
            or mimetypes.guess_type(upload.filename)[0]
            or "application/octet-stream"
        )
        created = datetime.fromtimestamp(self.clock(), timezone.utc)
        created_at = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            refused = self._over_quota(size)
            if refused:
                return self._error(self.quota_status, refused)
            duplicate = any(record["cid"] == cid for record in self.files.values())
            file_id = str(uuid.uuid4())
            record = {
                "id": file_id, "name": name, "cid": cid, "size": size, "number_of_files": number_of_files,
                "mime_type": mime_type, "group_id": fields.get("group_id"), "keyvalues": keyvalues,
                "network": network, "created_at": created_at, "car": car == "true",
            }
            self.files[file_id] = record
            self.pinned_most = max(self.pinned_most, len(self.files))
            if car == "true":
                self._dag_cids[file_id] = dag_cids
            else:
                self._raw_files[cid] = data
            self.uploads.append({
                "id": file_id, "name": name, "cid": cid, "size": size, "network": network,
                "group_id": record["group_id"], "keyvalues": keyvalues, "is_duplicate": duplicate,
                "sha256": hashlib.sha256(data).hexdigest(),
            })
        return _json(200, {"data": {**self._listed(record), "network": network, "is_duplicate": duplicate}})

    def _over_quota(self, size: int) -> str | None:
        """Why an upload of ``size`` bytes would break the plan (lock held), or None."""
        if self.file_limit is not None and len(self.files) + 1 > self.file_limit:
            return (f"Forbidden: plan limit reached: {len(self.files)} files pinned, the plan allows "
                    f"{self.file_limit}; delete files or upgrade the plan")
        used = sum(record["size"] for record in self.files.values())
        if self.storage_limit_bytes is not None and used + size > self.storage_limit_bytes:
            return (f"Forbidden: plan limit reached: {used} bytes pinned, this upload adds {size}, the plan "
                    f"allows {self.storage_limit_bytes}; delete files or upgrade the plan")
        return None

    def _read_car(self, data: bytes) -> tuple[CID, set[CID], int, int]:
        """(root, CIDs under it, their bytes, files in the folder) of a CAR upload; BadRequest when invalid."""
        try:
            car = read_car(data)
            if len(car.roots) != 1:
                raise BadRequest(f"a CAR upload must name exactly one root, this one names {len(car.roots)}")
            root = car.roots[0]
            dag = Dag(car.blocks)
            under = dag.walk(root)
            number_of_files = dag.count_files(root)
        except IPLDError as exc:
            raise BadRequest(f"invalid CAR: {exc}") from None
        with self._lock:
            for cid in under:
                self._blocks[cid] = car.blocks[cid]
        return root, set(under), sum(len(car.blocks[cid]) for cid in under), number_of_files

    def _gateway(self, req: Request) -> Response:
        cid_text, _, path = unquote(req.path[len("/ipfs/") :]).partition("/")
        try:
            root = CID.parse(cid_text)
        except IPLDError:
            return Response(400, f"invalid CID {cid_text!r}".encode(), "text/plain")
        not_found = Response(404, b"not pinned here", "text/plain")
        with self._lock:
            public = [fid for fid, record in self.files.items() if record["network"] == "public"]
            if not path and any(self.files[fid]["cid"] == cid_text for fid in public) and cid_text in self._raw_files:
                return Response(200, self._raw_files[cid_text], "application/octet-stream")
            if not any(root in self._dag_cids.get(fid, ()) for fid in public):
                return not_found
            dag = Dag(dict(self._blocks))
        try:
            content = dag.cat(dag.resolve(root, path))
        except KeyError:
            return not_found
        except IPLDError as exc:
            return Response(501, f"the double's gateway serves files only ({exc})".encode(), "text/plain")
        return Response(200, content, "application/octet-stream")


# ------------------------------------------------------------------------------------ Cloudflare KV

KEY_MAX_BYTES = 512
VALUE_MAX_BYTES = 25 * 1024 * 1024
METADATA_MAX_BYTES = 1024
BULK_MAX_ITEMS = 10_000
BULK_MAX_BYTES = 100_000_000  # "100 MB": the decimal reading, the stricter of the two
LIST_LIMIT_MIN, LIST_LIMIT_MAX = 10, 1000


def _utf8(key: str) -> bytes:  # KV orders keys by their UTF-8 bytes
    return key.encode("utf-8", "surrogatepass")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class KVDouble(_HTTPDouble):
    """The Workers KV REST API under ``/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/``.

    Endpoints: ``PUT …/bulk``, ``POST …/bulk/delete`` (and the older ``DELETE …/bulk``),
    ``PUT|GET|DELETE …/values/{key}``, ``GET …/metadata/{key}``, ``GET …/keys?prefix=&limit=&cursor=``.
    Anything else under the namespace answers 404 (code 10025);
    another account (code 7003) or namespace (code 10013) answers 404. Every JSON answer is the envelope
    ``{"success", "errors": [{"code", "message"}], "messages": [], "result"}``; ``GET …/values/{key}``
    answers the raw bytes.

    * Auth, checked before routing: a missing or non-``Bearer`` Authorization header answers 400 with
      code 6003 "Invalid request headers" (and an ``error_chain`` naming the header); another token 403
      with code 10000 "Authentication error".
    * Keys are validated everywhere: not empty, not ``.``/``..``, at most 512 bytes of UTF-8 (a longer key
      answers 414 in a path, 400 in a bulk body). In a path the key must be percent-encoded (a raw ``/``
      in it answers 404). Values at most 25 MiB, metadata at most 1024 bytes as compact JSON,
      ``expiration_ttl`` an integer ≥ 60, ``expiration`` an integer epoch at least 60 s ahead.
    * Bulk: a JSON array of at most 10,000 items (more: 400, code 10012); a body over 100,000,000 bytes
      is refused with 413 (code 10024) before it is read. Any invalid item answers 400 and stores nothing.
    * Bulk delete: a JSON array of at most 10,000 key names (strings; more, or anything else, answers 400
      and deletes nothing); ``result`` ``{"successful_key_count", "unsuccessful_keys"}``. Deleting a missing
      key succeeds (a delete is idempotent).
    * Daily limits of the plan: ``writes_per_day``, ``deletes_per_day``, ``lists_per_day``,
      ``reads_per_day`` (None: unlimited, the default; the free plan's are 1,000 / 1,000 / 1,000 / 100,000),
      counted per UTC day of ``clock`` (a callable returning epoch seconds, default ``time.time``; tests
      move it to simulate days), so they reset at 00:00 UTC. A bulk write of N pairs counts N writes, a bulk
      delete of N keys N deletes; a single PUT or DELETE one; ``GET …/keys`` one list; ``GET …/values`` and
      ``GET …/metadata`` one read each (a miss too). Past a limit the operation answers ``limit_status``
      (default 429; the real status is not documented, tests also use 400) with error code 10048 "your
      account has reached the free usage limit for this operation for today" and stores or deletes nothing.
      CHOICES: a request that would cross the limit is refused whole (a bulk of 10 with 5 writes left
      writes nothing); only what was done counts (keys refused by the 1-write-a-second rule or an
      ``unsuccessful`` fault are not counted); requests refused for another reason (auth, validation)
      count nothing. ``usage(day=None)`` gives ``{"writes", "deletes", "lists", "reads"}`` of a UTC day
      (a ``date`` or ``"YYYY-MM-DD"``; None: the clock's today).
    * CHOICE: KV allows 1 write per second to a key. A write to a key that was written successfully less
      than ``min_write_interval`` (1.0 s) earlier is refused: in a bulk the key is listed in
      ``result.unsuccessful_keys`` and not stored (the others succeed); a single-key PUT answers 429
      (code 10022). A key repeated within one bulk is therefore stored once, its repeats unsuccessful.
    * Expired keys (``expiration``/``expiration_ttl``, both against ``clock``) read as missing.
    * ``inject("unsuccessful:KEY")`` is not queued: it arms KEY at once, and the next successful bulk write
      or bulk delete containing KEY reports it in ``unsuccessful_keys`` without storing or deleting it (one
      bulk per injection). All other faults are queued and consumed one per request, whatever the endpoint.

    State: ``store`` (key → value as text; bytes that are not UTF-8 are kept with surrogateescape and
    read back exactly), ``metadata`` (key → metadata), ``expirations`` (key → epoch seconds), ``writes``
    ((key, time.monotonic()) per successful write, in order), ``deletes`` (the same per key deleted),
    ``usage()``, ``requests``.
    """

    LIMIT_MESSAGE = "your account has reached the free usage limit for this operation for today"

    _fault_pattern = re.compile(_COMMON_FAULT.pattern + r"|unsuccessful:.+")

    def __init__(
        self,
        token: str = "test-cf-token",
        account: str = "acct123",
        namespace: str = "ns456",
        *,
        writes_per_day: int | None = None,
        deletes_per_day: int | None = None,
        lists_per_day: int | None = None,
        reads_per_day: int | None = None,
        clock=time.time,
    ):
        self.token, self.account, self.namespace = token, account, namespace
        self.writes_per_day, self.deletes_per_day = writes_per_day, deletes_per_day
        self.lists_per_day, self.reads_per_day = lists_per_day, reads_per_day
        self.clock = clock
        self.limit_status = 429
        self.store: dict[str, str] = {}
        self.metadata: dict[str, object] = {}
        self.expirations: dict[str, int] = {}
        self.writes: list[tuple[str, float]] = []
        self.deletes: list[tuple[str, float]] = []
        self.min_write_interval = 1.0
        self._last_write: dict[str, float] = {}
        self._armed: Counter[str] = Counter()
        self._usage: dict[str, Counter[str]] = {}  # "YYYY-MM-DD" (UTC) -> operation -> count
        super().__init__()
        self.url = self.base_url + "/client/v4"

    # ---- the plan's daily limits
    def _today(self) -> str:
        return datetime.fromtimestamp(self.clock(), timezone.utc).date().isoformat()

    def usage(self, day=None) -> dict[str, int]:
        """Operations counted on a UTC day (a ``date``, ``"YYYY-MM-DD"`` or None for the clock's today)."""
        key = self._today() if day is None else str(day)
        with self._lock:
            counted = self._usage.get(key, Counter())
            return {kind: counted[kind] for kind in ("writes", "deletes", "lists", "reads")}

    def _over_limit(self, kind: str, n: int) -> Response | None:
        """The 10048 answer when ``n`` more operations of ``kind`` would pass today's limit (lock held)."""
        limit = getattr(self, f"{kind}_per_day")
        used = self._usage.get(self._today(), Counter())[kind]
        if limit is not None and used + n > limit:
            return self._error(self.limit_status, self.LIMIT_MESSAGE, 10048)
        return None

    def _count(self, kind: str, n: int) -> None:  # lock held
        self._usage.setdefault(self._today(), Counter())[kind] += n

    def _queue(self, faults) -> None:  # "unsuccessful:KEY" arms KEY at once; the rest are queued
        for fault in faults:
            if fault.startswith("unsuccessful:"):
                self._armed[fault.partition(":")[2]] += 1
            else:
                self._faults.append(fault)

    # ---- envelopes
    @staticmethod
    def _envelope(status: int, result=None, errors=(), result_info=None, headers=None):
        body = {"success": not errors, "errors": list(errors), "messages": [], "result": result}
        if result_info is not None:
            body["result_info"] = result_info
        return _json(status, body, headers)

    def _error(self, status: int, message: str, code: int | None = None) -> Response:
        return self._envelope(status, None, [{"code": code or 10012, "message": message}])

    def _fault_body(self, status: int) -> Response:
        code, message = {
            401: (10000, "Authentication error"),
            403: (10000, "Authentication error"),
            429: (971, "Please wait and consider throttling your request speed"),
            500: (10001, "service temporarily unavailable"),
            503: (10001, "service temporarily unavailable"),
            504: (10001, "service temporarily unavailable"),
        }[status]
        return self._error(status, message, code)

    # ---- routing
    def _before_body(self, req: Request, length: int) -> Response | None:
        if length > BULK_MAX_BYTES:
            return self._error(413, f"payload too large: {length} bytes > {BULK_MAX_BYTES}", 10024)
        return None

    def _respond(self, req: Request) -> Response:
        state, token = _bearer(req.headers)
        if state != "ok":
            chain = (
                {"code": 6103, "message": "Invalid format for X-Auth-Key header"}
                if state == "missing"
                else {"code": 6111, "message": "Invalid format for Authorization header"}
            )
            return self._envelope(
                400, None, [{"code": 6003, "message": "Invalid request headers", "error_chain": [chain]}]
            )
        if token != self.token:
            return self._error(403, "Authentication error", 10000)

        prefix = "/client/v4/accounts/"
        if not req.path.startswith(prefix):
            return self._error(404, "No route for that URI", 7000)
        segments = req.path[len(prefix) :].split("/")
        if len(segments) < 6 or segments[1:4] != ["storage", "kv", "namespaces"]:
            return self._error(404, "No route for that URI", 7000)
        if unquote(segments[0]) != self.account:
            return self._error(
                404, f"Could not route to {req.path}, perhaps your object identifier is invalid?", 7003
            )
        if unquote(segments[4]) != self.namespace:
            return self._error(404, "namespace not found", 10013)
        op, rest = segments[5], segments[6:]

        if op == "bulk" and not rest and req.method == "PUT":
            return self._bulk_write(req)
        if op == "bulk" and ((rest == ["delete"] and req.method == "POST") or (not rest and req.method == "DELETE")):
            return self._bulk_delete(req)
        if op == "keys" and not rest and req.method == "GET":
            return self._list_keys(req)
        if op in ("values", "metadata") and len(rest) == 1:
            key = self._path_key(rest[0])
            if op == "values" and req.method == "PUT":
                return self._put_value(req, key)
            if op == "values" and req.method in ("GET", "HEAD"):
                return self._get_value(key)
            if op == "values" and req.method == "DELETE":
                with self._lock:
                    refused = self._over_limit("deletes", 1)
                    if refused:
                        return refused
                    self._delete(key)
                return self._envelope(200, None)
            if op == "metadata" and req.method == "GET":
                with self._lock:
                    refused = self._over_limit("reads", 1)
                    if refused:
                        return refused
                    self._count("reads", 1)
                    self._expire(key)
                    if key not in self.store:
                        return self._error(404, "key not found", 10009)
                    return self._envelope(200, self.metadata.get(key))
        return self._error(404, "endpoint does not exist", 10025)

    # ---- validation
    @staticmethod
    def _check_key(key, where: str = "path") -> str:
        if not isinstance(key, str):
            raise BadRequest("key must be a string")
        if key == "":
            raise BadRequest("key names cannot be empty")
        if key in (".", ".."):
            raise BadRequest(f"Illegal key name {key!r}: '.' and '..' are not allowed")
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > KEY_MAX_BYTES:
            status = 414 if where == "path" else 400
            raise BadRequest(
                f"UTF-8 encoded length of {size} exceeds key length limit of {KEY_MAX_BYTES}", status
            )
        return key

    def _path_key(self, raw: str) -> str:
        try:
            key = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("key is not valid percent-encoded UTF-8") from None
        return self._check_key(key)

    @staticmethod
    def _check_metadata(metadata) -> None:
        size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > METADATA_MAX_BYTES:
            raise BadRequest(f"metadata of {size} bytes exceeds the limit of {METADATA_MAX_BYTES} bytes")

    def _expiry(self, expiration, expiration_ttl) -> int | None:
        """Epoch seconds at which the key expires (None: never), validating both options."""
        now = self.clock()
        if expiration_ttl is not None:
            if not _is_int(expiration_ttl) or expiration_ttl < 60:
                raise BadRequest(
                    f"Invalid expiration_ttl of {expiration_ttl}. "
                    "Please specify integer greater than or equal to 60."
                )
            return int(now) + expiration_ttl  # expiration_ttl wins when both are given
        if expiration is not None:
            if not _is_int(expiration) or expiration < now + 60:
                raise BadRequest(
                    f"Invalid expiration of {expiration}. "
                    "Expiration times must be at least 60 seconds in the future."
                )
            return expiration
        return None

    @staticmethod
    def _query_int(req: Request, name: str):
        values = req.query.get(name)
        if not values:
            return None
        try:
            return int(values[-1])
        except ValueError:
            raise BadRequest(f"Invalid {name} of {values[-1]!r}") from None

    # ---- state (call with the lock held)
    def _expire(self, key: str) -> None:
        expires = self.expirations.get(key)
        if expires is not None and expires <= self.clock():
            for table in (self.store, self.metadata, self.expirations):
                table.pop(key, None)

    def _too_soon(self, key: str, now: float) -> bool:
        last = self._last_write.get(key)
        return last is not None and now - last < self.min_write_interval

    def _write(self, key: str, value: bytes, metadata, expires: int | None, now: float) -> None:
        self.store[key] = value.decode("utf-8", "surrogateescape")
        if metadata is None:
            self.metadata.pop(key, None)
        else:
            self.metadata[key] = metadata
        if expires is None:
            self.expirations.pop(key, None)
        else:
            self.expirations[key] = expires
        self._last_write[key] = now
        self.writes.append((key, now))
        self._count("writes", 1)

    def _delete(self, key: str) -> None:
        for table in (self.store, self.metadata, self.expirations):
            table.pop(key, None)
        self.deletes.append((key, time.monotonic()))
        self._count("deletes", 1)

    # ---- endpoints
    def _bulk_write(self, req: Request) -> Response:
        try:
            items = json.loads(req.body)
        except ValueError:
            raise BadRequest("could not parse the request body as JSON") from None
        if not isinstance(items, list):
            raise BadRequest("the request body must be a JSON array of key/value pairs")
        if len(items) > BULK_MAX_ITEMS:
            raise BadRequest(
                f"bulk put: 'received {len(items)} key/value pairs, "
                f"but max allowed per request is: {BULK_MAX_ITEMS}'"
            )
        prepared = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadRequest(f"item {index} is not an object")
            if "key" not in item:
                raise BadRequest(f"item {index} has no key")
            key = self._check_key(item["key"], "bulk")
            value = item.get("value")
            if not isinstance(value, str):
                raise BadRequest(f"item {index} ({key!r}): value must be a string")
            encoded = item.get("base64", False)
            if not isinstance(encoded, bool):
                raise BadRequest(f"item {index} ({key!r}): base64 must be a boolean")
            if encoded:
                try:
                    data = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise BadRequest(f"item {index} ({key!r}): value is not valid base64") from None
            else:
                data = value.encode("utf-8", "surrogatepass")
            if len(data) > VALUE_MAX_BYTES:
                raise BadRequest(f"item {index} ({key!r}): value exceeds {VALUE_MAX_BYTES} bytes", 413, 10024)
            if "metadata" in item:
                self._check_metadata(item["metadata"])
            expires = self._expiry(item.get("expiration"), item.get("expiration_ttl"))
            prepared.append((key, data, item.get("metadata"), expires))

        unsuccessful: list[str] = []
        stored = 0
        with self._lock:
            refused = self._over_limit("writes", len(prepared))
            if refused:
                return refused
            now = time.monotonic()
            for key, data, metadata, expires in prepared:
                if self._armed[key] > 0:
                    self._armed[key] -= 1
                    failed = True
                else:
                    failed = self._too_soon(key, now)
                if failed:
                    if key not in unsuccessful:
                        unsuccessful.append(key)
                    continue
                self._write(key, data, metadata, expires, now)
                stored += 1
            self._armed += Counter()  # drop zero counts
        return self._envelope(200, {"successful_key_count": stored, "unsuccessful_keys": unsuccessful})

    def _bulk_delete(self, req: Request) -> Response:
        try:
            keys = json.loads(req.body)
        except ValueError:
            raise BadRequest("could not parse the request body as JSON") from None
        if not isinstance(keys, list):
            raise BadRequest("the request body must be a JSON array of key names")
        if len(keys) > BULK_MAX_ITEMS:
            raise BadRequest(
                f"bulk delete: 'received {len(keys)} keys, but max allowed per request is: {BULK_MAX_ITEMS}'"
            )
        for index, key in enumerate(keys):
            if not isinstance(key, str):
                raise BadRequest(f"item {index} is not a key name (a string)")
            self._check_key(key, "bulk")
        unsuccessful: list[str] = []
        deleted = 0
        with self._lock:
            refused = self._over_limit("deletes", len(keys))
            if refused:
                return refused
            for key in keys:
                if self._armed[key] > 0:
                    self._armed[key] -= 1
                    if key not in unsuccessful:
                        unsuccessful.append(key)
                    continue
                self._delete(key)
                deleted += 1
            self._armed += Counter()  # drop zero counts
        return self._envelope(200, {"successful_key_count": deleted, "unsuccessful_keys": unsuccessful})

    def _put_value(self, req: Request, key: str) -> Response:
        expires = self._expiry(self._query_int(req, "expiration"), self._query_int(req, "expiration_ttl"))
        metadata = None
        if content_type_of(req.headers.get("Content-Type"))[0] == "multipart/form-data":
            parts = {p.name: p for p in parse_multipart(req.body, req.headers.get("Content-Type"))}
            if "value" not in parts:
                raise BadRequest("multipart body without a 'value' field")
            value = parts["value"].content
            if "metadata" in parts:
                try:
                    metadata = json.loads(parts["metadata"].content)
                except ValueError:
                    raise BadRequest("metadata must be a JSON string") from None
                self._check_metadata(metadata)
        else:
            value = req.body
        if len(value) > VALUE_MAX_BYTES:
            raise BadRequest(f"value exceeds {VALUE_MAX_BYTES} bytes", 413, 10024)
        with self._lock:
            refused = self._over_limit("writes", 1)
            if refused:
                return refused
            now = time.monotonic()
            if self._too_soon(key, now):
                return self._error(429, "too many requests: 1 write per second per key", 10022)
            self._write(key, value, metadata, expires, now)
        return self._envelope(200, None)

    def _get_value(self, key: str) -> Response:
        with self._lock:
            refused = self._over_limit("reads", 1)
            if refused:
                return refused
            self._count("reads", 1)
            self._expire(key)
            if key not in self.store:
                return self._error(404, "key not found", 10009)
            value = self.store[key].encode("utf-8", "surrogateescape")
            expires = self.expirations.get(key)
        headers = {"Expiration": str(expires)} if expires is not None else {}
        return Response(200, value, "application/octet-stream", headers)

    def _list_keys(self, req: Request) -> Response:
        limit = self._query_int(req, "limit")
        if limit is None:
            limit = LIST_LIMIT_MAX
        if not LIST_LIMIT_MIN <= limit <= LIST_LIMIT_MAX:
            raise BadRequest(
                f"invalid limit argument: {limit} (must be between {LIST_LIMIT_MIN} and {LIST_LIMIT_MAX})",
                code=10028,
            )
        prefix = (req.query.get("prefix") or [""])[-1]
        cursor = (req.query.get("cursor") or [""])[-1]
        after = None
        if cursor:
            try:
                after = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
            except (ValueError, UnicodeError):
                raise BadRequest(f"malformed cursor {cursor!r}") from None
        with self._lock:
            refused = self._over_limit("lists", 1)
            if refused:
                return refused
            self._count("lists", 1)
            for key in list(self.store):
                self._expire(key)
            names = sorted((k for k in self.store if k.startswith(prefix)), key=_utf8)
            if after is not None:
                names = [k for k in names if _utf8(k) > _utf8(after)]
            page, more = names[:limit], len(names) > limit
            result = []
            for name in page:
                entry: dict = {"name": name}
                if name in self.expirations:
                    entry["expiration"] = self.expirations[name]
                if name in self.metadata:
                    entry["metadata"] = self.metadata[name]
                result.append(entry)
        next_cursor = base64.urlsafe_b64encode(page[-1].encode("utf-8")).decode("ascii") if more else ""
        return self._envelope(200, result, result_info={"count": len(result), "cursor": next_cursor})
