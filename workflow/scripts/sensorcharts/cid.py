"""IPFS content identifiers (CIDs) of a file's bytes, computed locally exactly as Kubo's ``ipfs add`` does.

A chart can thus be named, or an upload's answer checked, without a network round trip. Standard library only.
Pinata's observed CIDs for small files are the raw-leaf CIDv1 below (``bafkrei…``); which import profile it uses
for files over one chunk (256 KiB) is unconfirmed (``/work/shared/reference/external-apis.md``), and the newer
``unixfs-v1-2025`` profile gives different CIDs there.

What is implemented (Kubo's default import settings, the ``unixfs-v0-2015`` profile):

- **Chunking**: fixed-size chunks of ``CHUNK_SIZE`` = 262,144 bytes (``size-262144``); the last chunk may
  be shorter. The empty file is one empty chunk.
- **Layout**: balanced DAG with at most ``MAX_LINKS`` = 174 links per node. Leaves are filled into a node
  until it holds 174 links; then the tree grows one level (the full node becomes the first child of a new
  root, whose further children are filled the same way). Every leaf is at the same depth, which is the same
  tree as grouping the leaves 174 at a time, then those nodes 174 at a time, until one node is left. A
  file of one chunk is just its leaf, with no parent.
- **Hash**: sha2-256 (multihash ``0x12 0x20`` ‖ digest).
- :func:`cid_v1` (``ipfs add --cid-version=1``, which implies raw leaves): each chunk is a *raw* block
  (codec ``0x55``); a file of at most one chunk therefore has the CID
  ``"b" + base32lower(0x01 0x55 0x12 0x20 ‖ sha256(bytes))`` (``bafkrei…``). Larger files get a dag-pb
  root (codec ``0x70``, ``bafybei…``).
- :func:`cid_v0` (``ipfs add``, the CIDv0 default): every leaf, even the only chunk of a small file, is a
  dag-pb node holding a UnixFS ``Data{Type=File, Data=<chunk>, filesize}``; CIDs are base58btc of the
  multihash (``Qm…``).
- Internal nodes (both versions): dag-pb ``PBNode`` whose ``Data`` is UnixFS ``{Type=File,
  filesize=<bytes under the node>, blocksizes=[<bytes under each child>]}`` (no ``Data`` field) and whose
  ``Links`` are ``PBLink{Hash=<binary CID of the child>, Name="" (present, empty), Tsize}``; ``Tsize`` is the
  cumulative size of the child's serialized DAG: a raw leaf's byte length, or a dag-pb node's own encoded
  length plus the ``Tsize`` of all its links.
- Encoding as Go's boxo/go-codec-dagpb writes it: PBNode fields on the wire ``Links`` (2) then ``Data`` (1);
  PBLink fields ``Hash`` (1), ``Name`` (2), ``Tsize`` (3); UnixFS ``Data`` fields in field order ``Type`` (1),
  ``Data`` (2, omitted when nil: the empty file), ``filesize`` (3, always written), ``blocksizes`` (4,
  repeated, not packed).

Not implemented: the newer ``unixfs-v1-2025`` profile (1 MiB chunks, 1,024 links: identical to the above up
to 256 KiB, different above), other chunkers (rabin, buzhash), the trickle layout, other hash functions,
CIDv0 with ``--raw-leaves``, file mode/mtime metadata, directories.

Sources: ipfs/boxo ``ipld/unixfs/importer/balanced/builder.go`` (layout),
``ipld/unixfs/importer/helpers/dagbuilder.go`` (leaves, ``AddChild``), ``ipld/unixfs/unixfs.go`` and
``ipld/unixfs/pb/unixfs.pb.go`` (UnixFS ``Data``), ``ipld/merkledag/coding.go``, ``node.go`` (``Size`` =
encoded length + link sizes) and ``fieldorder.go``; ipld/go-codec-dagpb ``marshal.go`` (dag-pb bytes);
ipfs/kubo ``test/cli/add_test.go`` (CIDv1 implies raw leaves; defaults) and
``/work/shared/reference/external-apis.md``, section "IPFS content identifiers". ``tests/test_cid.py`` checks
the results against CIDs published in ipfs/kubo ``test/sharness/t0040-add-and-cat.sh``, ``test/cli/add_test.go``
and ``test/cli/cid_profiles_test.go`` and ipfs/boxo ``ipld/unixfs/importer/importer_test.go`` (single chunks,
20 and 40 chunks, exactly 174 and 175 chunks, 400 chunks).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Iterator

CHUNK_SIZE = 262_144
MAX_LINKS = 174

_SHA2_256 = b"\x12\x20"  # multihash: code 0x12 (sha2-256), length 32
_RAW = 0x55
_DAG_PB = 0x70
_UNIXFS_FILE = 2
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_V0_RE = re.compile(r"Qm[1-9A-HJ-NP-Za-km-z]{44}")
_V1_RE = re.compile(r"b[a-z2-7]+")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _uint_field(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _unixfs_file(filesize: int, data: bytes | None = None, blocksizes: Iterable[int] = ()) -> bytes:
    """UnixFS ``Data`` message of type File, fields in the order protobuf-go writes them."""
    out = _uint_field(1, _UNIXFS_FILE)
    if data is not None:
        out += _bytes_field(2, data)
    out += _uint_field(3, filesize)
    return out + b"".join(_uint_field(4, size) for size in blocksizes)


def _dag_pb(links: Iterable[tuple[bytes, int]], data: bytes) -> bytes:
    """dag-pb ``PBNode`` of ``(binary CID, Tsize)`` links (all named ``""``) and ``data``: Links first."""
    out = b"".join(
        _bytes_field(2, _bytes_field(1, cid) + _bytes_field(2, b"") + _uint_field(3, tsize)) for cid, tsize in links
    )
    return out + _bytes_field(1, data)


def _binary_cid(block: bytes, version: int, codec: int) -> bytes:
    multihash = _SHA2_256 + hashlib.sha256(block).digest()
    return multihash if version == 0 else bytes([1, codec]) + multihash


def _base58btc(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    digits = []
    while n:
        n, r = divmod(n, 58)
        digits.append(_BASE58[r])
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def _text(cid: bytes, version: int) -> str:
    if version == 0:
        return _base58btc(cid)
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


# A built (sub-)DAG: (binary CID, Tsize, bytes of file data under it).
_Node = tuple[bytes, int, int]


def _leaf(chunk: bytes, version: int) -> _Node:
    if version == 1:  # raw leaf
        return _binary_cid(chunk, 1, _RAW), len(chunk), len(chunk)
    # CIDv0: a dag-pb node holding UnixFS File data; an empty chunk (only the empty file) has no Data field.
    block = _dag_pb((), _unixfs_file(len(chunk), bytes(chunk) if chunk else None))
    return _binary_cid(block, 0, _DAG_PB), len(block), len(chunk)


def _internal(children: list[_Node], version: int) -> _Node:
    filesize = sum(size for _, _, size in children)
    data = _unixfs_file(filesize, None, [size for _, _, size in children])
    block = _dag_pb([(cid, tsize) for cid, tsize, _ in children], data)
    return _binary_cid(block, version, _DAG_PB), len(block) + sum(tsize for _, tsize, _ in children), filesize


def _root(chunks: Iterable[bytes], version: int) -> bytes:
    """Binary CID of the balanced DAG over ``chunks``, built level by level as the chunks stream in."""
    levels: list[list[_Node]] = [[]]
    seen = False
    for chunk in chunks:
        seen = True
        levels[0].append(_leaf(chunk, version))
        level = 0
        while len(levels[level]) == MAX_LINKS:  # a full node: close it and hand it to the level above
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(_internal(levels[level], version))
            levels[level] = []
            level += 1
    if not seen:
        return _leaf(b"", version)[0]
    # Close the partial nodes bottom-up; a level that is alone at the top with one entry is the root.
    for level in range(len(levels)):
        pending = levels[level]
        higher = any(levels[level + 1 :])
        if not pending:
            continue
        if not higher and len(pending) == 1:
            return pending[0][0]
        node = _internal(pending, version)
        if not higher:
            return node[0]
        levels[level + 1].append(node)
    raise AssertionError("unreachable: the top level always yields the root")


def _chunks_of(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_SIZE):
        yield view[start : start + CHUNK_SIZE]


def _chunks_from_file(path: str | os.PathLike) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK_SIZE)
            # read() on a regular file returns CHUNK_SIZE bytes until the last chunk; be strict anyway.
            while chunk and len(chunk) < CHUNK_SIZE:
                more = handle.read(CHUNK_SIZE - len(chunk))
                if not more:
                    break
                chunk += more
            if not chunk:
                return
            yield chunk


def cid_v1(data: bytes) -> str:
    """CIDv1 (base32, raw leaves) of ``data``, as ``ipfs add --cid-version=1`` gives it (Pinata's v3 API: ``bafkrei…``
    for files up to 256 KiB; above that only if Pinata imports with Kubo's default chunking and layout)."""
    return _text(_root(_chunks_of(data), 1), 1)


def cid_v0(data: bytes) -> str:
    """CIDv0 (``Qm…``) of ``data``, as plain ``ipfs add`` and Pinata's legacy API (``cidVersion: 0``) give it."""
    return _text(_root(_chunks_of(data), 0), 0)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise ValueError("truncated varint")
        byte = raw[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _is_binary_cid_v1(raw: bytes) -> bool:
    """``raw`` is ``<version 1><codec><multihash code><digest length><digest>`` with nothing left over."""
    try:
        version, pos = _read_varint(raw, 0)
        _codec, pos = _read_varint(raw, pos)
        _hash_code, pos = _read_varint(raw, pos)
        length, pos = _read_varint(raw, pos)
    except ValueError:
        return False
    return version == 1 and length > 0 and len(raw) - pos == length


def cid_version(cid: str) -> int:
    """0 for a base58btc CIDv0 (``Qm…``), 1 for a base32 (multibase ``b``) CIDv1; ValueError otherwise."""
    if isinstance(cid, str):
        if _V0_RE.fullmatch(cid):
            n = 0
            for char in cid:
                n = n * 58 + _BASE58.index(char)
            if n < 1 << 272 and n.to_bytes(34, "big")[:2] == _SHA2_256:
                return 0
        elif _V1_RE.fullmatch(cid):
            body = cid[1:].upper()
            try:
                raw = base64.b32decode(body + "=" * (-len(body) % 8))
            except ValueError:
                raw = b""
            if _is_binary_cid_v1(raw) and _text(raw, 1) == cid:
                return 1
    raise ValueError(f"{cid!r} is neither a CIDv0 ('Qm…', base58btc) nor a base32 CIDv1 ('b…')")


def file_cid(path: str | os.PathLike, version: int = 1) -> str:
    """CID of the file at ``path`` (read in chunks, never whole), CIDv1 by default or CIDv0 with ``version=0``."""
    if version not in (0, 1):
        raise ValueError(f"CID version must be 0 or 1, got {version!r}")
    return _text(_root(_chunks_from_file(path), version), version)
