"""The HTTP doubles of Pinata and Cloudflare KV accept what the real services accept and REJECT what they
reject (a double that accepts anything proves nothing), and their injected faults behave as specified."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time

import pytest
import requests

from doubles import KVDouble, PinataDouble, cid_v0_single_chunk, cid_v1_raw

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


def test_pinata_faults_are_consumed_only_by_the_upload_path(pinata):
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
