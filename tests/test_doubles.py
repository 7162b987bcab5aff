"""The HTTP doubles of Pinata and Cloudflare KV accept what the real services accept and REJECT what they
reject (a double that accepts anything proves nothing), and their injected faults behave as specified."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from datetime import datetime, timezone

import pytest
import requests

from doubles import KVDouble, PinataDouble, SettableClock, cid_v0_single_chunk, cid_v1_raw
from ipld_reader import CID, read_car, read_varint
from sensorcharts.cid import cid_v1, directory_car

JWT = "test-jwt"
TOKEN, ACCOUNT, NAMESPACE = "test-cf-token", "acct123", "ns456"
AUTH = {"Authorization": f"Bearer {JWT}"}
KV_AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-a-boundary\r\n\r\n\n\r"  # CR/LF-rich binary


@pytest.fixture
def pinata():
    with PinataDouble(jwt=JWT) as double:
        yield double


@pytest.fixture
def kv():
    with KVDouble(token=TOKEN, account=ACCOUNT, namespace=NAMESPACE) as double:
        yield double


def ns_url(kv: KVDouble, account: str = ACCOUNT, namespace: str = NAMESPACE) -> str:
    return f"{kv.url}/accounts/{account}/storage/kv/namespaces/{namespace}"


def upload(pinata, data=PNG, filename="chart.png", headers=AUTH, **fields):
    return requests.post(
        pinata.url, headers=headers, files={"file": (filename, data, "image/png")}, data=fields, timeout=5
    )


def bulk(kv, items, headers=KV_AUTH, **kw):
    return requests.put(f"{ns_url(kv)}/bulk", headers=headers, json=items, timeout=10, **kw)


def assert_v3_error(response, status):
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


def assert_envelope_error(response, status, code=None):
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False and body["messages"] == [] and body["result"] is None
    assert body["errors"] and all({"code", "message"} <= set(e) for e in body["errors"])
    if code is not None:
        assert body["errors"][0]["code"] == code
    return body["errors"][0]


# ------------------------------------------------------------------------------------------------ CIDs


def test_cid_check_values():
    # The widely published CIDv1 "bafkreifzjut3…" is that of b"hello world" WITHOUT a newline
    # (its digest b94d27b9… is sha256("hello world")); Kubo gives "bafkreifjjcie…" for b"hello world\n".
    assert cid_v1_raw(b"hello world") == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert cid_v1_raw(b"hello world\n") == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert cid_v1_raw(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert cid_v0_single_chunk(b"") == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert cid_v0_single_chunk(b"hello world\n") == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_upload_answers_the_cid_in_either_version(pinata):
    assert upload(pinata, b"hello world").json()["data"]["cid"] == (
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )
    pinata.cid_version("v0")
    v0 = upload(pinata, b"hello world\n").json()["data"]["cid"]
    assert v0 == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert upload(pinata, b"").json()["data"]["cid"] == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    with pytest.raises(ValueError):
        pinata.cid_version("unixfs-v1-2025")


# ---------------------------------------------------------------------------------------------- Pinata


def test_pinata_accepts_a_correct_upload(pinata):
    assert pinata.url.startswith("http://127.0.0.1:") and pinata.url.endswith("/v3/files")
    keyvalues = json.dumps({"day": "2025-01-10"})
    r = upload(pinata, network="public", name="day.png", group_id="g-1", keyvalues=keyvalues)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) >= {"id", "name", "cid", "created_at", "size", "number_of_files", "mime_type",
                         "group_id", "keyvalues", "network", "is_duplicate"}
    assert data["cid"] == cid_v1_raw(PNG) and data["cid"].startswith("bafkrei")
    assert (data["name"], data["size"], data["number_of_files"]) == ("day.png", len(PNG), 1)
    assert (data["network"], data["group_id"], data["keyvalues"]) == ("public", "g-1", {"day": "2025-01-10"})
    assert data["mime_type"] == "image/png" and data["is_duplicate"] is False
    assert data["created_at"].endswith("Z") and "T" in data["created_at"]
    assert pinata.uploads == [{
        "id": data["id"], "name": "day.png", "cid": data["cid"], "size": len(PNG), "network": "public",
        "group_id": "g-1", "keyvalues": {"day": "2025-01-10"}, "is_duplicate": False,
        "sha256": hashlib.sha256(PNG).hexdigest(),  # the binary body came through the multipart parser intact
    }]
    assert pinata.requests == [{"method": "POST", "path": "/v3/files", "status": 200}]


def test_pinata_network_defaults_to_private_and_name_to_the_filename(pinata):
    data = upload(pinata).json()["data"]
    assert data["network"] == "private" and data["name"] == "chart.png" and data["keyvalues"] == {}
    assert pinata.uploads[0]["network"] == "private" and pinata.uploads[0]["group_id"] is None


def test_pinata_duplicate_is_flagged_and_still_recorded(pinata):
    first, second = upload(pinata, network="public"), upload(pinata, network="public")
    assert first.json()["data"]["is_duplicate"] is False and second.json()["data"]["is_duplicate"] is True
    assert first.json()["data"]["cid"] == second.json()["data"]["cid"]
    assert [u["is_duplicate"] for u in pinata.uploads] == [False, True]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Token {JWT}"}, {"Authorization": f"Basic {JWT}"}, {"Authorization": JWT},
     {"Authorization": "Bearer wrong-jwt"}, {"Authorization": "Bearer "}],
    ids=["missing", "token-scheme", "basic-scheme", "no-scheme", "wrong-token", "empty-token"],
)
def test_pinata_rejects_bad_credentials_with_401(pinata, headers):
    assert_v3_error(upload(pinata, headers=headers), 401)
    assert pinata.uploads == [] and pinata.requests[-1]["status"] == 401


def test_pinata_requires_one_file_part_with_a_filename(pinata):
    no_file = requests.post(pinata.url, headers=AUTH, files={"network": (None, "public")}, timeout=5)
    assert "file is required" in assert_v3_error(no_file, 400)
    no_filename = requests.post(pinata.url, headers=AUTH, files={"file": (None, PNG)}, timeout=5)
    assert "file is required" in assert_v3_error(no_filename, 400)
    folder = [("file", ("a.png", b"a")), ("file", ("b.png", b"b"))]
    two = requests.post(pinata.url, headers=AUTH, files=folder, timeout=5)
    assert "only one file" in assert_v3_error(two, 400)
    assert pinata.uploads == []


def test_pinata_requires_a_multipart_body(pinata):
    assert_v3_error(requests.post(pinata.url, headers=AUTH, data={"network": "public"}, timeout=5), 400)
    assert_v3_error(requests.post(pinata.url, headers=AUTH, data=PNG, timeout=5), 400)
    unclosed = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'
    bad = requests.post(pinata.url, headers={**AUTH, "Content-Type": "multipart/form-data; boundary=xyz"},
                        data=unclosed, timeout=5)
    assert_v3_error(bad, 400)  # no closing boundary
    assert pinata.uploads == []


@pytest.mark.parametrize(
    "keyvalues",
    ["not json", json.dumps(["a", "b"]), json.dumps({"n": 1}), json.dumps({"n": None}), json.dumps("s")],
    ids=["not-json", "list", "int-value", "null-value", "string"],
)
def test_pinata_rejects_bad_keyvalues(pinata, keyvalues):
    assert "keyvalues" in assert_v3_error(upload(pinata, keyvalues=keyvalues), 400)
    assert pinata.uploads == []


@pytest.mark.parametrize(
    "fields", [{"network": "ipfs"}, {"network": "Public"}, {"network": ""}, {"car": "maybe"}, {"car": "true"}]
)
def test_pinata_rejects_bad_network_and_car(pinata, fields):
    assert_v3_error(upload(pinata, **fields), 400)
    assert pinata.uploads == []


def test_pinata_supports_single_chunk_files_only(pinata):
    assert upload(pinata, b"x" * 262_144).status_code == 200
    message = assert_v3_error(upload(pinata, b"x" * 262_145), 400)
    assert "single-chunk" in message and len(pinata.uploads) == 1


def test_pinata_answers_404_elsewhere(pinata):
    base = pinata.url.rsplit("/v3/files", 1)[0]
    assert_v3_error(requests.get(pinata.url, headers=AUTH, timeout=5), 404)
    legacy = requests.post(f"{base}/pinning/pinFileToIPFS", headers=AUTH, files={"file": ("a", b"a")}, timeout=5)
    assert_v3_error(legacy, 404)


# ----------------------------------------------------------------------------------------- Pinata faults


def test_pinata_fault_statuses_and_bodies(pinata):
    pinata.inject("429:2", "429", "500", "502", "503", "401", "403")
    r = upload(pinata)
    assert_v3_error(r, 429)
    assert r.headers["Retry-After"] == "2"
    r = upload(pinata)
    assert_v3_error(r, 429)
    assert "Retry-After" not in r.headers
    assert_v3_error(upload(pinata), 500)
    r = upload(pinata)
    assert r.status_code == 502 and r.headers["Content-Type"].startswith("text/html")
    assert_v3_error(upload(pinata), 503)
    assert_v3_error(upload(pinata), 401)
    assert_v3_error(upload(pinata), 403)
    assert pinata.uploads == []
    assert upload(pinata).status_code == 200  # queue drained
    assert [q["status"] for q in pinata.requests] == [429, 429, 500, 502, 503, 401, 403, 200]


def test_pinata_faults_are_not_consumed_by_unknown_paths(pinata):
    pinata.inject("500")
    base = pinata.url.rsplit("/v3/files", 1)[0]
    assert requests.get(f"{base}/elsewhere", timeout=5).status_code == 404
    assert upload(pinata).status_code == 500
    assert upload(pinata).status_code == 200


def test_pinata_timeout_fault_does_not_block_other_requests(pinata):
    pinata.inject("timeout")
    with pytest.raises(requests.exceptions.Timeout):
        requests.post(pinata.url, headers=AUTH, files={"file": ("a.png", PNG)}, timeout=0.5)
    started = time.monotonic()
    assert upload(pinata).status_code == 200
    assert time.monotonic() - started < 2
    assert [q["status"] for q in pinata.requests] == [None, 200]
    assert len(pinata.uploads) == 1  # the timed-out upload was not processed


def test_pinata_drop_fault_closes_without_answer(pinata):
    pinata.inject("drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        upload(pinata)
    assert pinata.uploads == []
    assert pinata.requests == [{"method": "POST", "path": "/v3/files", "status": None}]
    assert upload(pinata).status_code == 200


def test_unknown_faults_are_refused():
    with PinataDouble() as pinata, KVDouble() as kv:
        for bad in ("404", "429:x", "slow", "unsuccessful:k"):
            with pytest.raises(ValueError):
                pinata.inject(bad)
        for bad in ("404", "unsuccessful:", "429:"):
            with pytest.raises(ValueError):
                kv.inject(bad)


def test_close_does_not_wait_for_a_timeout_fault():
    pinata = PinataDouble()
    pinata.inject("timeout")
    with pytest.raises(requests.exceptions.Timeout):
        requests.post(pinata.url, headers=AUTH, files={"file": ("a", b"a")}, timeout=0.3)
    started = time.monotonic()
    pinata.close()
    assert time.monotonic() - started < 2


# -------------------------------------------------------------------------------------------------- KV


def test_kv_bulk_write_read_and_list(kv):
    assert kv.url.startswith("http://127.0.0.1:") and kv.url.endswith("/client/v4")
    items = [{"key": f"charts:{i:02}", "value": json.dumps({"i": i})} for i in range(25)]
    items.append({"key": "bin", "value": base64.b64encode(b"\x00\xff\r\n").decode(), "base64": True})
    items.append({"key": "meta", "value": "v", "metadata": {"cid": "bafk"}, "expiration_ttl": 3600})
    r = bulk(kv, items)
    assert r.status_code == 200
    assert r.json() == {"success": True, "errors": [], "messages": [],
                        "result": {"successful_key_count": 27, "unsuccessful_keys": []}}
    assert kv.store["charts:07"] == '{"i": 7}' and [w[0] for w in kv.writes] == [i["key"] for i in items]
    assert all(isinstance(t, float) for _, t in kv.writes)

    got = requests.get(f"{ns_url(kv)}/values/charts%3A07", headers=KV_AUTH, timeout=5)
    assert got.status_code == 200 and got.content == b'{"i": 7}'  # raw bytes, not an envelope
    assert requests.get(f"{ns_url(kv)}/values/bin", headers=KV_AUTH, timeout=5).content == b"\x00\xff\r\n"
    meta = requests.get(f"{ns_url(kv)}/metadata/meta", headers=KV_AUTH, timeout=5).json()
    assert meta["success"] and meta["result"] == {"cid": "bafk"}

    names, cursor, pages = [], None, 0
    while True:
        params = {"prefix": "charts:", "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, params=params, timeout=5).json()
        assert page["success"] and all(set(e) >= {"name"} for e in page["result"])
        names += [e["name"] for e in page["result"]]
        pages += 1
        cursor = page["result_info"]["cursor"]
        if not cursor:
            break
    assert names == [f"charts:{i:02}" for i in range(25)] and pages == 3


def test_kv_single_put_raw_and_multipart(kv):
    key = "day:2025/01/10 ü"  # ':' '/' ' ' and non-ASCII, percent-encoded as the reference requires
    url = f"{ns_url(kv)}/values/{requests.utils.quote(key, safe='')}"
    r = requests.put(url, headers=KV_AUTH, data=b"raw-value", timeout=5)
    assert r.status_code == 200
    assert r.json() == {"success": True, "errors": [], "messages": [], "result": None}
    assert kv.store[key] == "raw-value"
    assert requests.get(url, headers=KV_AUTH, timeout=5).content == b"raw-value"
    r = requests.put(f"{ns_url(kv)}/values/other", headers=KV_AUTH,
                     files={"value": (None, "v2"), "metadata": (None, json.dumps({"a": "b"}))}, timeout=5)
    assert r.status_code == 200 and kv.store["other"] == "v2" and kv.metadata["other"] == {"a": "b"}
    # an unencoded '/' in the key does not route
    unencoded = requests.put(f"{ns_url(kv)}/values/a/b", headers=KV_AUTH, data=b"x", timeout=5)
    assert_envelope_error(unencoded, 404)


def test_kv_get_missing_key_is_404_10009(kv):
    r = requests.get(f"{ns_url(kv)}/values/nope", headers=KV_AUTH, timeout=5)
    assert assert_envelope_error(r, 404, 10009)["message"] == "key not found"
    assert_envelope_error(requests.get(f"{ns_url(kv)}/metadata/nope", headers=KV_AUTH, timeout=5), 404, 10009)


def test_kv_auth_failures(kv):
    for value in (None, TOKEN, f"Basic {TOKEN}", f"Token {TOKEN}", "Bearer"):
        headers = {} if value is None else {"Authorization": value}
        error = assert_envelope_error(bulk(kv, [{"key": "k", "value": "v"}], headers=headers), 400, 6003)
        assert error["message"] == "Invalid request headers"
    wrong = bulk(kv, [{"key": "k", "value": "v"}], headers={"Authorization": "Bearer nope"})
    error = assert_envelope_error(wrong, 403, 10000)
    assert error["message"] == "Authentication error"
    assert_envelope_error(requests.get(f"{ns_url(kv)}/values/k", timeout=5), 400, 6003)
    assert kv.store == {} and kv.writes == []


def test_kv_wrong_account_or_namespace_is_404(kv):
    for url in (ns_url(kv, namespace="other"), ns_url(kv, account="other")):
        assert_envelope_error(requests.put(f"{url}/bulk", headers=KV_AUTH, json=[OK_ITEM], timeout=5), 404)
        assert_envelope_error(requests.get(f"{url}/values/k", headers=KV_AUTH, timeout=5), 404)
    other = requests.get(ns_url(kv, namespace="other") + "/keys", headers=KV_AUTH, timeout=5)
    assert_envelope_error(other, 404, 10013)
    assert kv.store == {}


OK_ITEM = {"key": "fine", "value": "v"}


@pytest.mark.parametrize(
    "item, reason",
    [
        ({"key": "", "value": "v"}, "empty"),
        ({"key": ".", "value": "v"}, "'.'"),
        ({"key": "..", "value": "v"}, "'..'"),
        ({"key": "k" * 513, "value": "v"}, "513"),
        ({"key": "é" * 256 + "k", "value": "v"}, "513"),  # 513 bytes of UTF-8 in 257 characters
        ({"key": "k", "value": 1}, "value must be a string"),
        ({"key": "k", "value": None}, "value must be a string"),
        ({"key": "k", "value": {"a": "b"}}, "value must be a string"),
        ({"key": "k"}, "value must be a string"),
        ({"value": "v"}, "no key"),
        ({"key": 5, "value": "v"}, "key must be a string"),
        ({"key": "k", "value": "v", "expiration_ttl": 30}, "expiration_ttl of 30"),
        ({"key": "k", "value": "v", "expiration_ttl": "3600"}, "expiration_ttl"),
        ({"key": "k", "value": "v", "expiration": 1}, "expiration of 1"),
        ({"key": "k", "value": "v", "metadata": {"m": "x" * 1020}}, "metadata of 1028 bytes"),
        ({"key": "k", "value": "not base64!", "base64": True}, "base64"),
        ({"key": "k", "value": "v", "base64": "yes"}, "base64"),
        ("k=v", "not an object"),
    ],
    ids=["empty", "dot", "dotdot", "513-bytes", "513-utf8-bytes", "int-value", "null-value", "object-value",
         "no-value", "no-key", "int-key", "ttl-30", "ttl-string", "expiration-past", "metadata-1028",
         "bad-base64", "base64-not-bool", "not-object"],
)
def test_kv_bulk_rejects_an_invalid_item_and_stores_nothing(kv, item, reason):
    assert reason in assert_envelope_error(bulk(kv, [OK_ITEM, item]), 400)["message"]
    assert kv.store == {} and kv.writes == []


def test_kv_bulk_limits_are_not_over_strict(kv):
    items = [
        {"key": "k" * 512, "value": "v"},
        {"key": "é" * 256, "value": "v"},
        {"key": "m", "value": "v", "metadata": {"m": "x" * 1016}},  # exactly 1,024 bytes serialized
        {"key": "t", "value": "v", "expiration_ttl": 60},
        {"key": "e", "value": "v", "expiration": int(time.time()) + 120},
    ]
    assert bulk(kv, items).json()["result"] == {"successful_key_count": 5, "unsuccessful_keys": []}


def test_kv_bulk_rejects_more_than_10000_items_and_bad_bodies(kv):
    r = bulk(kv, [{"key": f"k{i}", "value": "v"} for i in range(10_001)])
    assert "10000" in assert_envelope_error(r, 400)["message"]
    full = bulk(kv, [{"key": f"k{i}", "value": "v"} for i in range(10_000)])
    assert full.json()["result"]["successful_key_count"] == 10_000
    kv.store.clear()
    assert_envelope_error(requests.put(f"{ns_url(kv)}/bulk", headers=KV_AUTH, data=b"[{", timeout=5), 400)
    assert_envelope_error(bulk(kv, {"key": "k", "value": "v"}), 400)
    assert kv.store == {}


def test_kv_refuses_a_body_over_100_mb_unread(kv):
    host, port = kv.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"PUT /client/v4/accounts/{ACCOUNT}/storage/kv/namespaces/{NAMESPACE}/bulk HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100_000_001}\r\n\r\n[".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["success"] is False


def test_kv_list_limit_must_be_10_to_1000(kv):
    def keys(limit):
        return requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, params={"limit": limit}, timeout=5)

    for limit in (9, 1001, 0, "x"):
        assert_envelope_error(keys(limit), 400)
    assert assert_envelope_error(keys(9), 400, 10028)
    for limit in (10, 1000):
        assert keys(limit).status_code == 200


def test_kv_one_write_per_second_per_key(kv):
    first = bulk(kv, [{"key": "a", "value": "1"}, {"key": "b", "value": "1"}])
    assert first.json()["result"]["successful_key_count"] == 2
    r = bulk(kv, [{"key": "a", "value": "2"}, {"key": "c", "value": "2"}]).json()
    assert r["success"] is True and r["result"] == {"successful_key_count": 1, "unsuccessful_keys": ["a"]}
    assert kv.store["a"] == "1" and kv.store["c"] == "2"
    single = requests.put(f"{ns_url(kv)}/values/b", headers=KV_AUTH, data=b"2", timeout=5)
    assert_envelope_error(single, 429)
    assert kv.store["b"] == "1"
    twice = bulk(kv, [{"key": "d", "value": "1"}, {"key": "d", "value": "2"}]).json()["result"]
    assert twice == {"successful_key_count": 1, "unsuccessful_keys": ["d"]} and kv.store["d"] == "1"
    time.sleep(1.05)
    later = bulk(kv, [{"key": "a", "value": "3"}])
    assert later.json()["result"] == {"successful_key_count": 1, "unsuccessful_keys": []}
    assert kv.store["a"] == "3" and [k for k, _ in kv.writes] == ["a", "b", "c", "d", "a"]


# ---------------------------------------------------------------------------------------------- KV faults


def test_kv_unsuccessful_fault(kv):
    kv.inject("unsuccessful:b")
    # not consumed by another endpoint, nor by a bulk without b
    assert requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, timeout=5).status_code == 200
    assert bulk(kv, [{"key": "a", "value": "1"}]).json()["result"]["unsuccessful_keys"] == []
    r = bulk(kv, [{"key": "x", "value": "1"}, {"key": "b", "value": "1"}, {"key": "c", "value": "1"}]).json()
    assert r["success"] is True and r["result"] == {"successful_key_count": 2, "unsuccessful_keys": ["b"]}
    assert "b" not in kv.store and {"x", "c"} <= set(kv.store)
    retry = bulk(kv, [{"key": "b", "value": "1"}])
    assert retry.json()["result"] == {"successful_key_count": 1, "unsuccessful_keys": []}


def test_kv_fault_statuses_consumed_one_per_request_on_any_endpoint(kv):
    kv.inject("429:2", "429", "500", "502", "503", "401", "403")
    r = requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, timeout=5)
    assert_envelope_error(r, 429, 971)
    assert r.headers["Retry-After"] == "2"
    r = requests.get(f"{ns_url(kv)}/values/x", headers=KV_AUTH, timeout=5)
    assert_envelope_error(r, 429)
    assert "Retry-After" not in r.headers
    assert_envelope_error(bulk(kv, [OK_ITEM]), 500)
    r = bulk(kv, [OK_ITEM])
    assert r.status_code == 502 and r.headers["Content-Type"].startswith("text/html")
    assert_envelope_error(bulk(kv, [OK_ITEM]), 503)
    assert_envelope_error(bulk(kv, [OK_ITEM]), 401, 10000)
    assert_envelope_error(bulk(kv, [OK_ITEM]), 403, 10000)
    assert kv.store == {}
    assert bulk(kv, [OK_ITEM]).json()["result"]["successful_key_count"] == 1
    assert [q["status"] for q in kv.requests] == [429, 429, 500, 502, 503, 401, 403, 200]


def test_kv_timeout_and_drop_faults(kv):
    kv.inject("timeout", "drop")
    with pytest.raises(requests.exceptions.Timeout):
        requests.put(f"{ns_url(kv)}/bulk", headers=KV_AUTH, json=[OK_ITEM], timeout=0.5)
    with pytest.raises(requests.exceptions.ConnectionError):
        bulk(kv, [OK_ITEM])
    started = time.monotonic()
    assert bulk(kv, [OK_ITEM]).status_code == 200
    assert time.monotonic() - started < 2
    assert [q["status"] for q in kv.requests] == [None, None, 200] and len(kv.writes) == 1


# ------------------------------------------------------------------------------------- Pinata: CAR uploads
# Valid CARs come from sensorcharts.cid (checked against Kubo and npm's importer in test_cid.py); the invalid
# ones are those CARs taken apart and broken one way at a time.

FOLDER = {
    "temperature/daily/2025-05-01.png": PNG + b"daily",
    "temperature/hourly/2025-05-01T13.png": PNG + b"hourly",
    "humidity/daily/2025-05-01.png": b"\x07" * 300_000,  # over one chunk: a dag-pb file root
    "notes.txt": b"",
}


def car_upload(pinata, car, headers=AUTH, filename="2025-05-01.car", **fields):
    fields = {"network": "public", "car": "true", **fields}
    files = {"file": (filename, car, "application/vnd.ipld.car")}
    return requests.post(pinata.url, headers=headers, files=files, data=fields, timeout=10)


def car_header(*roots: str, version: int = 1) -> bytes:
    """A framed CAR header naming ``roots`` (dag-cbor written out by hand)."""
    body = b"\xa2\x65roots" + bytes([0x80 + len(roots)])
    for root in roots:
        raw = b"\0" + CID.parse(root).binary
        body += b"\xd8\x2a\x58" + bytes([len(raw)]) + raw
    body += b"\x67version" + bytes([version])
    return bytes([len(body)]) + body


def car_sections(car: bytes) -> tuple[bytes, list[bytes]]:
    """(framed header, framed sections) of a CARv1."""
    length, pos = read_varint(car, 0)
    header, pos = car[: pos + length], pos + length
    sections = []
    while pos < len(car):
        length, start = read_varint(car, pos)
        sections.append(car[pos : start + length])
        pos = start + length
    return header, sections


def test_pinata_car_upload_keeps_the_root_and_counts_the_files(pinata):
    root, car = directory_car(FOLDER)
    r = car_upload(pinata, car, name="2025-05-01", keyvalues=json.dumps({"day": "2025-05-01"}))
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["cid"], data["number_of_files"], data["name"]) == (root, 4, "2025-05-01")
    assert data["network"] == "public" and data["is_duplicate"] is False
    record = pinata.files[data["id"]]
    assert record["car"] is True and record["cid"] == root and pinata.pin_count == 1
    # size: the bytes of the distinct blocks under the root
    assert record["size"] == sum(len(block) for block in read_car(car).blocks.values())
    assert pinata.uploads[0]["sha256"] == hashlib.sha256(car).hexdigest()
    # Through the gateway: each file by its path under the folder, and by its own CID.
    for path, content in FOLDER.items():
        got = requests.get(f"{pinata.gateway_url}/{root}/{path}", timeout=5)
        assert got.status_code == 200 and got.content == content
        assert requests.get(f"{pinata.gateway_url}/{cid_v1(content)}", timeout=5).content == content
    assert requests.get(f"{pinata.gateway_url}/{root}/nope.png", timeout=5).status_code == 404
    assert requests.get(f"{pinata.gateway_url}/{root}/temperature", timeout=5).status_code == 501


def test_pinata_car_upload_of_one_file(pinata):
    big = bytes(range(256)) * 2000  # two chunks: too big for a plain upload to the double
    root_folder, car = directory_car({"big.bin": big})
    _, sections = car_sections(car)  # the folder's block, then the file's
    file_cid = cid_v1(big)
    data = car_upload(pinata, car_header(file_cid) + b"".join(sections[1:])).json()["data"]
    assert (data["cid"], data["number_of_files"]) == (file_cid, 1)
    assert requests.get(f"{pinata.gateway_url}/{file_cid}", timeout=5).content == big
    assert root_folder != file_cid


def _broken_cars():
    root, car = directory_car(FOLDER)
    header, sections = car_sections(car)
    flipped = bytearray(sections[-1])
    flipped[-1] ^= 1
    other_root = directory_car({"other.png": b"other"})[0]
    blocks = b"".join(sections)
    return {
        "a block's bytes do not match its CID": (header + b"".join(sections[:-1]) + bytes(flipped), "hash"),
        "a block under the root is missing": (header + b"".join(sections[:-1]), "missing"),
        "the root is not in the CAR": (car_header(other_root) + blocks, "missing"),
        "truncated": (car[:-10], "truncated"),
        "not a CAR": (PNG, "CAR"),
        "CAR version 2": (car_header(root, version=2) + blocks, "version"),
        "two roots": (car_header(root, other_root) + blocks, "exactly one root"),
        "no root": (car_header() + blocks, "roots"),
        "header only": (header, "missing"),
    }


BROKEN = _broken_cars()


@pytest.mark.parametrize("case", BROKEN)
def test_pinata_rejects_a_broken_car_and_pins_nothing(pinata, case):
    car, reason = BROKEN[case]
    message = assert_v3_error(car_upload(pinata, car), 400)
    assert reason in message
    assert pinata.files == {} and pinata.uploads == [] and pinata.pin_count == 0


def test_pinata_car_upload_requires_auth(pinata):
    _, car = directory_car(FOLDER)
    assert_v3_error(car_upload(pinata, car, headers={"Authorization": "Bearer nope"}), 401)
    assert pinata.files == {}


# --------------------------------------------------------------------------- Pinata: delete, list, get, totals


def upload_ok(pinata, data, **fields):
    r = upload(pinata, data, **{"network": "public", **fields})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def api(pinata, method, path, headers=AUTH, **kw):
    return requests.request(method, f"{pinata.api_url}{path}", headers=headers, timeout=5, **kw)


def test_pinata_delete_by_id(pinata):
    kept, gone = upload_ok(pinata, b"kept"), upload_ok(pinata, b"gone")
    assert requests.get(f"{pinata.gateway_url}/{gone['cid']}", timeout=5).content == b"gone"
    r = api(pinata, "DELETE", f"/v3/files/public/{gone['id']}")
    assert r.status_code == 200 and r.json() == {"data": None}
    assert set(pinata.files) == {kept["id"]} and pinata.deleted == [gone["id"]] and pinata.pin_count == 1
    assert requests.get(f"{pinata.gateway_url}/{gone['cid']}", timeout=5).status_code == 404  # unpinned
    assert_v3_error(api(pinata, "DELETE", f"/v3/files/public/{gone['id']}"), 404)  # already deleted
    assert_v3_error(api(pinata, "DELETE", "/v3/files/public/00000000-0000-0000-0000-000000000000"), 404)
    assert_v3_error(api(pinata, "DELETE", f"/v3/files/public/{kept['cid']}"), 404)  # a CID is not an id
    assert_v3_error(api(pinata, "DELETE", f"/v3/files/private/{kept['id']}"), 404)  # the other network
    assert_v3_error(api(pinata, "DELETE", f"/v3/files/ipfs/{kept['id']}"), 400)
    assert set(pinata.files) == {kept["id"]} and pinata.deleted == [gone["id"]]


def test_pinata_get_by_id(pinata):
    data = upload_ok(pinata, b"x", name="x.png", keyvalues=json.dumps({"k": "v"}))
    got = api(pinata, "GET", f"/v3/files/public/{data['id']}").json()["data"]
    assert got == {key: data[key] for key in ("id", "name", "cid", "size", "number_of_files", "mime_type",
                                               "group_id", "keyvalues", "created_at")}
    assert_v3_error(api(pinata, "GET", f"/v3/files/private/{data['id']}"), 404)


def test_pinata_list_filters_and_pages(pinata):
    made = [upload_ok(pinata, f"chart {i}".encode(), name=f"c{i % 2}.png", group_id=f"g{i % 3}",
                      keyvalues=json.dumps({"day": f"d{i % 2}"})) for i in range(7)]
    private = upload(pinata, b"secret", network="private").json()["data"]

    def listing(**params):
        r = api(pinata, "GET", "/v3/files/public", params=params)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    everything = listing(limit=100)
    assert [f["id"] for f in everything["files"]] == [m["id"] for m in reversed(made)]  # newest first
    assert everything["next_page_token"] == "" and private["id"] not in {f["id"] for f in everything["files"]}
    assert set(everything["files"][0]) == {"id", "name", "cid", "size", "number_of_files", "mime_type",
                                           "group_id", "keyvalues", "created_at"}
    assert [f["id"] for f in listing(cid=made[3]["cid"])["files"]] == [made[3]["id"]]
    assert {f["id"] for f in listing(name="c1.png")["files"]} == {m["id"] for m in made[1::2]}
    assert {f["id"] for f in listing(group="g0")["files"]} == {made[0]["id"], made[3]["id"], made[6]["id"]}
    assert {f["id"] for f in listing(**{"keyvalues[day]": "d0"})["files"]} == {m["id"] for m in made[0::2]}
    assert listing(name="c1")["files"] == []  # exact names only
    assert len(listing()["files"]) == 7  # default limit 10

    ids, token, pages = [], None, 0
    while True:
        page = listing(limit=3, **({"pageToken": token} if token else {}))
        ids += [f["id"] for f in page["files"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert ids == [m["id"] for m in reversed(made)] and pages == 3
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"pageToken": "not-a-token"}):
        assert_v3_error(api(pinata, "GET", "/v3/files/public", params=bad), 400)
    assert_v3_error(api(pinata, "GET", "/v3/files/ipfs"), 400)


def test_pinata_pinned_data_total(pinata):
    def total(headers=AUTH):
        return api(pinata, "GET", "/data/userPinnedDataTotal", headers=headers)

    assert total().json() == {"pin_count": 0, "pin_size_total": 0, "pin_size_with_replications_total": 0}
    first, _ = upload_ok(pinata, b"12345"), upload_ok(pinata, b"123")
    assert total().json()["pin_count"] == 2 and total().json()["pin_size_total"] == 8
    api(pinata, "DELETE", f"/v3/files/public/{first['id']}")
    assert total().json() == {"pin_count": 1, "pin_size_total": 3, "pin_size_with_replications_total": 3}
    denied = total(headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401 and set(denied.json()["error"]) == {"reason", "details"}


@pytest.mark.parametrize(
    "method, path",
    [("DELETE", "/v3/files/public/some-id"), ("GET", "/v3/files/public"), ("GET", "/v3/files/private/some-id"),
     ("GET", "/data/userPinnedDataTotal")],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Token {JWT}"}],
                         ids=["missing", "wrong-token", "other-scheme"])
def test_pinata_new_endpoints_require_the_jwt(pinata, method, path, headers):
    kept = upload_ok(pinata, b"kept")
    r = api(pinata, method, path.replace("some-id", kept["id"]), headers=headers)
    assert r.status_code == 401 and "error" in r.json()
    assert set(pinata.files) == {kept["id"]} and pinata.deleted == []


# ------------------------------------------------------------------------------------- Pinata: plan quotas


def test_pinata_file_limit_refuses_the_upload_past_it_and_deletes_free_quota():
    with PinataDouble(jwt=JWT, file_limit=2) as pinata:
        first = upload_ok(pinata, b"1")
        _, car = directory_car(FOLDER)
        assert car_upload(pinata, car).json()["data"]["number_of_files"] == 4  # a folder counts as one file
        refused = upload(pinata, b"3", network="public")
        assert "plan limit" in assert_v3_error(refused, 403)
        assert pinata.pin_count == 2 and len(pinata.uploads) == 2
        assert car_upload(pinata, directory_car({"x": b"x"})[1]).status_code == 403
        api(pinata, "DELETE", f"/v3/files/public/{first['id']}")
        assert upload(pinata, b"3", network="public").status_code == 200 and pinata.pin_count == 2
        pinata.quota_status = 402
        assert_v3_error(upload(pinata, b"4", network="public"), 402)


def test_pinata_storage_limit():
    with PinataDouble(jwt=JWT, storage_limit_bytes=10) as pinata:
        upload_ok(pinata, b"123456")
        assert "plan limit" in assert_v3_error(upload(pinata, b"12345", network="public"), 403)
        assert upload(pinata, b"1234", network="public").status_code == 200  # exactly at the limit
        assert pinata.pinned_bytes == 10


def test_pinata_duplicates_count_against_the_quota():
    with PinataDouble(jwt=JWT, file_limit=1) as pinata:
        upload_ok(pinata, b"same")
        assert_v3_error(upload(pinata, b"same", network="public"), 403)


def test_pinata_created_at_follows_its_clock():
    with PinataDouble(jwt=JWT, clock=lambda: 1_746_057_600.25) as pinata:  # 2025-05-01 00:00:00.250 UTC
        assert upload_ok(pinata, b"x")["created_at"] == "2025-05-01T00:00:00.250Z"


# ------------------------------------------------------------------------------------- Pinata: new faults


def test_pinata_faults_reach_the_new_endpoints(pinata):
    data = upload_ok(pinata, b"x")
    pinata.inject("429:7", endpoint="delete")
    assert upload(pinata, b"y", network="public").status_code == 200  # not for an upload
    r = api(pinata, "DELETE", f"/v3/files/public/{data['id']}")
    assert_v3_error(r, 429)
    assert r.headers["Retry-After"] == "7" and data["id"] in pinata.files  # nothing deleted
    assert api(pinata, "DELETE", f"/v3/files/public/{data['id']}").status_code == 200
    pinata.inject("500")  # any endpoint but the gateway
    assert requests.get(f"{pinata.gateway_url}/{cid_v1_raw(b'y')}", timeout=5).status_code == 200
    assert_v3_error(api(pinata, "GET", "/v3/files/public"), 500)
    pinata.inject("503", endpoint="data")
    assert api(pinata, "GET", "/v3/files/public").status_code == 200
    assert api(pinata, "GET", "/data/userPinnedDataTotal").status_code == 503
    pinata.inject("drop", endpoint="list")
    with pytest.raises(requests.exceptions.ConnectionError):
        api(pinata, "GET", "/v3/files/public")
    with pytest.raises(ValueError):
        pinata.inject("500", endpoint="gateway")
    with pytest.raises(ValueError):
        pinata.inject("404", endpoint="delete")


# -------------------------------------------------------------------------------------- KV: bulk delete


def bulk_delete(kv, keys, headers=KV_AUTH, older=False):
    if older:
        return requests.delete(f"{ns_url(kv)}/bulk", headers=headers, json=keys, timeout=10)
    return requests.post(f"{ns_url(kv)}/bulk/delete", headers=headers, json=keys, timeout=10)


@pytest.mark.parametrize("older", [False, True], ids=["POST-bulk-delete", "DELETE-bulk"])
def test_kv_bulk_delete(kv, older):
    bulk(kv, [{"key": k, "value": "v"} for k in ("a", "b", "c")])
    r = bulk_delete(kv, ["a", "b", "never-written"], older=older)
    assert r.status_code == 200
    assert r.json()["result"] == {"successful_key_count": 3, "unsuccessful_keys": []}
    assert set(kv.store) == {"c"} and [k for k, _ in kv.deletes] == ["a", "b", "never-written"]
    assert requests.get(f"{ns_url(kv)}/values/a", headers=KV_AUTH, timeout=5).status_code == 404


def test_kv_bulk_delete_rejects_bad_bodies_and_deletes_nothing(kv):
    bulk(kv, [{"key": "a", "value": "v"}])
    assert "10000" in assert_envelope_error(bulk_delete(kv, ["a"] + [f"k{i}" for i in range(10_000)]), 400)["message"]
    for body in ({"keys": ["a"]}, [{"key": "a"}], ["a", 5], ["a", ""], ["a", "k" * 513], ["a", ".."]):
        assert_envelope_error(bulk_delete(kv, body), 400)
    assert set(kv.store) == {"a"} and kv.deletes == []
    full = bulk_delete(kv, [f"k{i}" for i in range(10_000)])
    assert full.json()["result"]["successful_key_count"] == 10_000


def test_kv_bulk_delete_requires_auth(kv):
    bulk(kv, [{"key": "a", "value": "v"}])
    for older in (False, True):
        assert_envelope_error(bulk_delete(kv, ["a"], headers={}, older=older), 400, 6003)
        assert_envelope_error(bulk_delete(kv, ["a"], headers={"Authorization": "Bearer no"}, older=older), 403, 10000)
    assert set(kv.store) == {"a"} and kv.deletes == []


def test_kv_unsuccessful_fault_in_a_bulk_delete(kv):
    bulk(kv, [{"key": k, "value": "v"} for k in ("a", "b")])
    kv.inject("unsuccessful:b")
    r = bulk_delete(kv, ["a", "b"]).json()["result"]
    assert r == {"successful_key_count": 1, "unsuccessful_keys": ["b"]} and set(kv.store) == {"b"}


# ----------------------------------------------------------------------------------- KV: the daily limits


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def assert_limit_reached(response, status=429):
    error = assert_envelope_error(response, status, 10048)
    assert error["message"] == "your account has reached the free usage limit for this operation for today"


def test_kv_daily_write_limit_counts_each_pair_and_resets_at_utc_midnight():
    clock = SettableClock(utc(2025, 5, 1, 23, 0))
    with KVDouble(token=TOKEN, account=ACCOUNT, namespace=NAMESPACE, writes_per_day=5, clock=clock) as kv:
        assert bulk(kv, [{"key": f"a{i}", "value": "v"} for i in range(3)]).status_code == 200
        assert kv.usage() == {"writes": 3, "deletes": 0, "lists": 0, "reads": 0}
        assert_limit_reached(bulk(kv, [{"key": f"b{i}", "value": "v"} for i in range(3)]))  # 6 > 5: refused whole
        assert not any(k.startswith("b") for k in kv.store) and kv.usage()["writes"] == 3
        assert bulk(kv, [{"key": f"c{i}", "value": "v"} for i in range(2)]).status_code == 200  # exactly 5
        assert_limit_reached(requests.put(f"{ns_url(kv)}/values/d", headers=KV_AUTH, data=b"v", timeout=5))
        kv.limit_status = 400
        assert_limit_reached(bulk(kv, [{"key": "e", "value": "v"}]), 400)
        assert "d" not in kv.store and "e" not in kv.store and len(kv.writes) == 5
        # reads, lists and deletes are limited separately
        assert requests.get(f"{ns_url(kv)}/values/a0", headers=KV_AUTH, timeout=5).content == b"v"

        clock.set(utc(2025, 5, 1, 23, 59, 59))
        assert_limit_reached(bulk(kv, [{"key": "e", "value": "v"}]), 400)
        clock.advance(1)  # 00:00 UTC: a new day
        assert bulk(kv, [{"key": "e", "value": "v"}]).status_code == 200 and kv.store["e"] == "v"
        assert kv.usage() == {"writes": 1, "deletes": 0, "lists": 0, "reads": 0}
        assert kv.usage("2025-05-01") == {"writes": 5, "deletes": 0, "lists": 0, "reads": 1}
        assert kv.usage(utc(2025, 5, 2).date())["writes"] == 1


def test_kv_daily_limits_of_deletes_lists_and_reads():
    clock = SettableClock(utc(2025, 5, 1, 12))
    limits = {"deletes_per_day": 3, "lists_per_day": 1, "reads_per_day": 2}
    with KVDouble(token=TOKEN, account=ACCOUNT, namespace=NAMESPACE, clock=clock, **limits) as kv:
        bulk(kv, [{"key": k, "value": "v"} for k in "abcdef"])
        assert bulk_delete(kv, ["a", "b"]).status_code == 200
        assert_limit_reached(bulk_delete(kv, ["c", "d"]))  # 4 > 3
        assert_limit_reached(bulk_delete(kv, ["c", "d"], older=True))
        assert requests.delete(f"{ns_url(kv)}/values/c", headers=KV_AUTH, timeout=5).status_code == 200
        assert_limit_reached(requests.delete(f"{ns_url(kv)}/values/d", headers=KV_AUTH, timeout=5))
        assert set(kv.store) == {"d", "e", "f"}

        assert requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, timeout=5).status_code == 200
        assert_limit_reached(requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, timeout=5))

        assert requests.get(f"{ns_url(kv)}/values/d", headers=KV_AUTH, timeout=5).status_code == 200
        assert requests.get(f"{ns_url(kv)}/metadata/zz", headers=KV_AUTH, timeout=5).status_code == 404  # a miss
        assert_limit_reached(requests.get(f"{ns_url(kv)}/values/d", headers=KV_AUTH, timeout=5))
        assert kv.usage() == {"writes": 6, "deletes": 3, "lists": 1, "reads": 2}

        clock.set(utc(2025, 5, 2))
        assert requests.get(f"{ns_url(kv)}/keys", headers=KV_AUTH, timeout=5).status_code == 200


def test_kv_limits_default_to_unlimited_and_refused_requests_count_nothing(kv):
    bulk(kv, [{"key": f"k{i}", "value": "v"} for i in range(2_000)])
    assert kv.usage()["writes"] == 2_000
    assert_envelope_error(bulk(kv, [{"key": "", "value": "v"}]), 400)
    assert_envelope_error(bulk(kv, [{"key": "k", "value": "v"}], headers={}), 400)
    assert kv.usage()["writes"] == 2_000


def test_kv_expiry_follows_its_clock():
    clock = SettableClock(utc(2025, 5, 1, 12))
    with KVDouble(token=TOKEN, account=ACCOUNT, namespace=NAMESPACE, clock=clock) as kv:
        bulk(kv, [{"key": "t", "value": "v", "expiration_ttl": 60}])
        assert kv.expirations["t"] == int(utc(2025, 5, 1, 12, 1).timestamp())
        clock.set(utc(2025, 5, 1, 12, 1, 1))
        assert requests.get(f"{ns_url(kv)}/values/t", headers=KV_AUTH, timeout=5).status_code == 404
