"""Reads what IPFS tools write, independently of the project's code: CIDs, CARv1 files, dag-pb nodes and UnixFS
files and folders. The Pinata double checks CAR uploads with it and serves pinned files through it; the CID
tests read the project's CARs with it. Strict: anything malformed raises ``IPLDError`` naming the defect.

Formats (public specifications): CIDs and multihashes (multiformats/cid, multiformats/multihash), unsigned
varints (multiformats/unsigned-varint: at most 9 bytes, minimal), CARv1 (ipld/specs "Content Addressable
aRchives": a varint-framed dag-cbor header ``{"roots": [CID, ...], "version": 1}``, then varint-framed
``CID ‖ block`` sections), dag-pb (ipld/specs codec-dag-pb: ``PBNode{Links (2, repeated, before Data), Data
(1)}``, ``PBLink{Hash (1), Name (2), Tsize (3)}``, links sorted by name bytes) and UnixFS (ipfs/specs UNIXFS:
``Data{Type (1), Data (2), filesize (3), blocksizes (4, repeated)}``, types Raw 0, Directory 1, File 2,
Metadata 3, Symlink 4, HAMTShard 5).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

RAW, DAG_PB = 0x55, 0x70
SHA2_256 = 0x12
UNIXFS_RAW, UNIXFS_DIRECTORY, UNIXFS_FILE, UNIXFS_HAMT = 0, 1, 2, 5
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class IPLDError(ValueError):
    """Bytes that are not what they claim to be."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the unsigned varint at ``pos``: at most 9 bytes, minimally encoded."""
    value = shift = 0
    for index in range(9):
        if pos + index >= len(buf):
            raise IPLDError("truncated varint")
        byte = buf[pos + index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and index > 0:
                raise IPLDError("varint not minimally encoded")
            return value, pos + index + 1
        shift += 7
    raise IPLDError("varint longer than 9 bytes")


@dataclass(frozen=True)
class CID:
    version: int
    codec: int
    digest: bytes  # the sha2-256 digest
    binary: bytes  # the CID's bytes as a CAR or a dag-pb link holds them

    def __str__(self) -> str:
        if self.version == 0:
            n, out = int.from_bytes(self.binary, "big"), ""
            while n:
                n, r = divmod(n, 58)
                out = _B58[r] + out
            return out
        return "b" + base64.b32encode(self.binary).decode().lower().rstrip("=")

    @classmethod
    def read(cls, buf: bytes, pos: int = 0) -> tuple[CID, int]:
        """The binary CID at ``pos`` and the position after it; only sha2-256 CIDs of raw or dag-pb blocks."""
        if buf[pos : pos + 2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
            end = pos + 34
            if end > len(buf):
                raise IPLDError("truncated CIDv0")
            return cls(0, DAG_PB, buf[pos + 2 : end], buf[pos:end]), end
        start = pos
        version, pos = read_varint(buf, pos)
        if version != 1:
            raise IPLDError(f"unsupported CID version {version}")
        codec, pos = read_varint(buf, pos)
        if codec not in (RAW, DAG_PB):
            raise IPLDError(f"unsupported codec 0x{codec:x} (raw 0x55 and dag-pb 0x70 only)")
        hash_code, pos = read_varint(buf, pos)
        length, pos = read_varint(buf, pos)
        if hash_code != SHA2_256 or length != 32:
            raise IPLDError(f"unsupported multihash 0x{hash_code:x}/{length} (sha2-256 only)")
        if pos + 32 > len(buf):
            raise IPLDError("truncated CID digest")
        return cls(1, codec, buf[pos : pos + 32], buf[start : pos + 32]), pos + 32

    @classmethod
    def parse(cls, text: str) -> CID:
        """A CID from its text: base58btc ``Qm…`` (v0) or base32 ``b…`` (v1)."""
        try:
            if text.startswith("Qm"):
                n = 0
                for char in text:
                    n = n * 58 + _B58.index(char)
                raw = n.to_bytes(34, "big")
            elif text.startswith("b"):
                body = text[1:].upper()
                raw = base64.b32decode(body + "=" * (-len(body) % 8))
            else:
                raise IPLDError(f"not a CID: {text!r}")
            cid, end = cls.read(raw)
        except (ValueError, OverflowError) as exc:
            raise IPLDError(f"not a CID: {text!r} ({exc})") from None
        if end != len(raw) or str(cid) != text:
            raise IPLDError(f"not a CID in canonical form: {text!r}")
        return cid


def _check_hash(cid: CID, block: bytes) -> None:
    if hashlib.sha256(block).digest() != cid.digest:
        raise IPLDError(f"block {cid} does not hash to its CID")


# ----------------------------------------------------------------------------------------------- CARv1


def _cbor_item(buf: bytes, pos: int):
    """The dag-cbor item at ``pos`` (the subset a CAR header uses): (value, position after it)."""
    if pos >= len(buf):
        raise IPLDError("truncated CAR header")
    major, info = buf[pos] >> 5, buf[pos] & 0x1F
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        if pos + size > len(buf):
            raise IPLDError("truncated CAR header")
        arg, pos = int.from_bytes(buf[pos : pos + size], "big"), pos + size
        if arg < (24 if size == 1 else 1 << (4 * size)):
            raise IPLDError("CAR header: CBOR integer not minimally encoded")
    else:
        raise IPLDError("CAR header: indefinite lengths and reserved CBOR values are not dag-cbor")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        if pos + arg > len(buf):
            raise IPLDError("truncated CAR header")
        raw = buf[pos : pos + arg]
        return (raw if major == 2 else raw.decode("utf-8")), pos + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _cbor_item(buf, pos)
            items.append(item)
        return items, pos
    if major == 5:
        out: dict = {}
        for _ in range(arg):
            key, pos = _cbor_item(buf, pos)
            if not isinstance(key, str) or key in out:
                raise IPLDError("CAR header: map keys must be distinct strings")
            out[key], pos = _cbor_item(buf, pos)
        if list(out) != sorted(out, key=lambda k: (len(k.encode()), k.encode())):
            raise IPLDError("CAR header: map keys not in dag-cbor order")
        return out, pos
    if major == 6 and arg == 42:
        raw, pos = _cbor_item(buf, pos)
        if not isinstance(raw, bytes) or raw[:1] != b"\0":
            raise IPLDError("CAR header: a CID (tag 42) must be bytes starting with 0x00")
        cid, end = CID.read(raw, 1)
        if end != len(raw):
            raise IPLDError("CAR header: trailing bytes after a CID")
        return cid, pos
    raise IPLDError(f"CAR header: CBOR major type {major} is not expected there")


@dataclass
class Car:
    roots: list[CID]
    blocks: dict[CID, bytes] = field(default_factory=dict)  # in the order the CAR holds them
    duplicates: int = 0  # sections repeating a block already given


def read_car(data: bytes) -> Car:
    """A CARv1 file, every block's bytes checked against its CID and every dag-pb block decoded."""
    length, pos = read_varint(data, 0)
    header, end = _cbor_item(data[: pos + length], pos)
    if end != pos + length or not isinstance(header, dict):
        raise IPLDError("CAR header is not one dag-cbor map")
    if header.get("version") != 1:
        raise IPLDError(f"CAR version {header.get('version')!r}: only CARv1 is read")
    roots = header.get("roots")
    if set(header) != {"roots", "version"} or not isinstance(roots, list) or not roots:
        raise IPLDError("CARv1 header must be {roots: [CID, ...], version: 1}")
    if not all(isinstance(root, CID) for root in roots):
        raise IPLDError("CAR roots must be CIDs")
    car, pos = Car(roots), end
    while pos < len(data):
        length, start = read_varint(data, pos)
        if length == 0 or start + length > len(data):
            raise IPLDError("truncated or empty CAR section")
        cid, block_start = CID.read(data[: start + length], start)
        block = data[block_start : start + length]
        _check_hash(cid, block)
        if cid.codec == DAG_PB:
            decode_dag_pb(block)
        if cid in car.blocks:
            car.duplicates += 1
        car.blocks[cid] = block
        pos = start + length
    return car


# ------------------------------------------------------------------------------------------ dag-pb, UnixFS


def _protobuf_fields(buf: bytes, what: str):
    """(field number, wire type, value) of each field: varints as ints, length-delimited as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            if pos + size > len(buf):
                raise IPLDError(f"{what}: truncated field {number}")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise IPLDError(f"{what}: wire type {wire} of field {number} is not used there")
        yield number, wire, value


@dataclass(frozen=True)
class Link:
    cid: CID
    name: str
    tsize: int | None


@dataclass(frozen=True)
class PBNode:
    links: tuple[Link, ...]
    data: bytes | None


def decode_dag_pb(block: bytes) -> PBNode:
    """A dag-pb node, strictly: Links before Data, at most one Data, known fields only, links sorted by name."""
    links, data = [], None
    for number, wire, value in _protobuf_fields(block, "dag-pb node"):
        if number == 2 and wire == 2 and data is None:
            cid = name = tsize = None
            for n, w, v in _protobuf_fields(value, "dag-pb link"):
                if n == 1 and w == 2 and cid is None and name is None and tsize is None:
                    cid, end = CID.read(v)
                    if end != len(v):
                        raise IPLDError("dag-pb link: trailing bytes after the CID")
                elif n == 2 and w == 2 and cid is not None and name is None and tsize is None:
                    name = v.decode("utf-8")
                elif n == 3 and w == 0 and cid is not None and tsize is None:
                    tsize = v
                else:
                    raise IPLDError(f"dag-pb link: unexpected, repeated or misplaced field {n}")
            if cid is None:
                raise IPLDError("dag-pb link without a Hash")
            links.append(Link(cid, name or "", tsize))
        elif number == 1 and wire == 2 and data is None:
            data = value
        else:
            raise IPLDError(f"dag-pb node: unexpected, repeated or misplaced field {number}")
    names = [link.name.encode() for link in links]
    if names != sorted(names):
        raise IPLDError("dag-pb node: links not sorted by name")
    return PBNode(tuple(links), data)


@dataclass(frozen=True)
class UnixFS:
    type: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]


def decode_unixfs(data: bytes | None) -> UnixFS:
    if data is None:
        raise IPLDError("dag-pb node without UnixFS data")
    fields = {"type": None, "data": b"", "filesize": None, "blocksizes": []}
    for number, wire, value in _protobuf_fields(data, "UnixFS data"):
        if number == 1 and wire == 0:
            fields["type"] = value
        elif number == 2 and wire == 2:
            fields["data"] = value
        elif number == 3 and wire == 0:
            fields["filesize"] = value
        elif number == 4 and wire == 0:
            fields["blocksizes"].append(value)
        elif number in (5, 6, 7, 8):  # hashType, fanout, mode, mtime: allowed, not used here
            continue
        else:
            raise IPLDError(f"UnixFS data: unexpected field {number}")
    if fields["type"] is None:
        raise IPLDError("UnixFS data without a Type")
    return UnixFS(fields["type"], fields["data"], fields["filesize"], tuple(fields["blocksizes"]))


class Dag:
    """Blocks by CID, read as UnixFS: completeness, file count, content by path."""

    def __init__(self, blocks: dict[CID, bytes]) -> None:
        self.blocks = blocks

    def _node(self, cid: CID) -> tuple[PBNode | None, bytes]:
        if cid not in self.blocks:
            raise IPLDError(f"block {cid} is missing")
        block = self.blocks[cid]
        return (decode_dag_pb(block) if cid.codec == DAG_PB else None), block

    def walk(self, root: CID) -> list[CID]:
        """Every distinct CID under ``root`` (itself included), depth first; IPLDError for a missing block."""
        seen, order, pending = set(), [], [root]
        while pending:
            cid = pending.pop()
            if cid in seen:
                continue
            seen.add(cid)
            order.append(cid)
            node, _ = self._node(cid)
            if node is not None:
                pending.extend(reversed([link.cid for link in node.links]))
        return order

    def count_files(self, root: CID) -> int:
        """Files in the folder at ``root`` (each path counted), or 1 when ``root`` is a file."""
        node, _ = self._node(root)
        if node is None:
            return 1
        unixfs = decode_unixfs(node.data)
        if unixfs.type == UNIXFS_HAMT:
            raise IPLDError("HAMT-sharded folders are not read here")
        if unixfs.type != UNIXFS_DIRECTORY:
            return 1
        return sum(self.count_files(link.cid) for link in node.links)

    def resolve(self, root: CID, path: str = "") -> CID:
        """The CID at ``root/path`` (path segments are folder entry names)."""
        cid = root
        for name in [segment for segment in path.split("/") if segment]:
            node, _ = self._node(cid)
            if node is None or decode_unixfs(node.data).type != UNIXFS_DIRECTORY:
                raise IPLDError(f"{cid} is not a folder")
            matches = [link.cid for link in node.links if link.name == name]
            if not matches:
                raise KeyError(name)
            cid = matches[0]
        return cid

    def cat(self, cid: CID) -> bytes:
        """The bytes of the UnixFS file at ``cid``."""
        node, block = self._node(cid)
        if node is None:
            return block
        unixfs = decode_unixfs(node.data)
        if unixfs.type not in (UNIXFS_FILE, UNIXFS_RAW):
            raise IPLDError(f"{cid} is not a file")
        content = unixfs.data + b"".join(self.cat(link.cid) for link in node.links)
        if unixfs.filesize is not None and unixfs.filesize != len(content):
            raise IPLDError(f"file {cid}: filesize {unixfs.filesize} but {len(content)} bytes under it")
        return content
