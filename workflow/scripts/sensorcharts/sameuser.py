"""Talking only to processes of the same user: a private runtime folder, files in it opened without following
symlinks, and the peer check of Unix sockets.

The warm job server (warm.py) receives a job's whole environment (a database password, API tokens) and its
stdout and stderr over a Unix socket. On a shared machine, a cluster's login node say, any user can compute
the name of a file in a world-writable folder such as /tmp, be there first, or plant a symlink where a file
is about to be opened. So:

* the server's socket, start lock and error file live in a folder of this user's own,
  ``<XDG_RUNTIME_DIR, or else the temporary folder>/sensorcharts-<uid>``, created mode 0700. It is used only
  while it is one: opened without following a symlink, owned by this user, closed to everybody else.
  Anything else (another owner, a looser mode, a symlink) is left alone, not repaired: whatever is in it
  may have been planted;
* files in it are opened relative to the open folder (``dir_fd``), never through a symlink;
* a socket's path says nothing about who listens on it, so both ends check the other's credentials
  (``SO_PEERCRED``, which Linux records when a socket connects or listens) before anything else.

See docs/security.md.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import tempfile

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class NotPrivate(OSError):
    """The runtime folder exists, but it is not a folder of this user's that nobody else can enter."""


def folder_path() -> str:
    """Where this user's private runtime folder is (it may not exist yet)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"sensorcharts-{os.geteuid()}")


def open_folder(path: str) -> int:
    """Open private folder ``path``, creating it (mode 0700) if there is none, and return its descriptor.

    Raises NotPrivate when ``path`` is a symlink, not a folder, another user's, or open to others; OSError
    when it cannot be created (its parent is missing, say).
    """
    try:
        os.mkdir(path, 0o700)  # a symlink there, even a dangling one, makes this fail
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink, or it is a file
            raise NotPrivate(f"{path} is a symlink or not a folder: remove it, or set XDG_RUNTIME_DIR to a "
                             "folder of your own") from None
        raise
    found = os.fstat(fd)
    if found.st_uid != os.geteuid() or found.st_mode & 0o077:
        os.close(fd)
        raise NotPrivate(f"{path} is not a private folder of this user (owner uid {found.st_uid}, mode "
                         f"{found.st_mode & 0o777:04o}): remove it, or set XDG_RUNTIME_DIR to a folder of your own")
    return fd


def open_file(folder_fd: int, name: str, flags: int) -> int:
    """Open file ``name`` of the open private folder, never through a symlink; created owner-only."""
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder_fd)


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of connected Unix socket ``sock``."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        raise OSError(errno.ENOTSUP, "this system cannot tell who is at the other end of a Unix socket "
                                     "(no SO_PEERCRED)")
    _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size))
    return uid
