"""In-memory access to the pick/pack data directory that follows order-reset's protocol.

The backend keeps scan_sessions.json and takeover_requests.json in memory and
writes a whole file back after each change. order-reset replaces those files
when it resets or restores them, so a backend that writes its memory back
afterwards puts the archived sessions back. A Store prevents that:

* each transaction holds the exclusive flock on order-reset.lock, the lock
  that order-reset takes, from the read to the write;
* under the lock it reads order-reset.generation, which order-reset increases
  before it replaces the files, and reloads both files when the number differs
  from the one at its last load;
* it also reloads a file that another process replaced since this Store last
  read or wrote it, so that several processes can share the directory;
* it writes a file through a temporary file in the same directory, flushed,
  fsynced and renamed over the old one with os.replace, keeping its mode and,
  where the process may, its owner and group.

Usage::

    store = Store("/var/lib/pickpack/data")
    with store.transaction() as data:
        data.sessions[session_id] = session
    with store.read() as data:
        count = len(data.sessions)

Standard library only; Python 3.9 or later; Linux, or another system with
flock(2).
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
from typing import Dict, Iterator, Optional, Tuple

SESSIONS_FILE = "scan_sessions.json"
TAKEOVERS_FILE = "takeover_requests.json"
LOCK_FILE = "order-reset.lock"
GENERATION_FILE = "order-reset.generation"

# order-reset removes leftover temporary files ending in ".order-reset-tmp",
# so this module's temporary files use another suffix, and remove their own.
TEMP_SUFFIX = ".backend-tmp"

# order-reset accepts digits with whitespace around them, and nothing else.
_GENERATION_PATTERN = re.compile(rb"\s*([0-9]{1,20})\s*", re.ASCII)

# Steps by which a written file's modification time is moved past the one it
# replaces: 1 microsecond, 1 millisecond, 1 second, 2 seconds (FAT).
_MTIME_STEPS_NS = (1_000, 1_000_000, 1_000_000_000, 2_000_000_000)

log = logging.getLogger(__name__)

# (device, inode, size, mtime_ns, ctime_ns) of a file as this Store last saw it.
Signature = Tuple[int, int, int, int, int]


class Data:
    """The content of both files: each an object keyed by id, as a dict.

    Inside a transaction, change the dicts in place. Do not keep references
    to them across transactions, because a reload replaces them.
    """

    __slots__ = ("sessions", "takeover_requests")

    def __init__(self, sessions: dict, takeover_requests: dict) -> None:
        self.sessions = sessions
        self.takeover_requests = takeover_requests


class _FileState:
    """Signature and digest of one file as this Store last read or wrote it."""

    __slots__ = ("signature", "digest")

    def __init__(self) -> None:
        self.signature: Optional[Signature] = None
        # SHA-256 of the bytes last read or written, to skip unchanged writes.
        self.digest: Optional[bytes] = None


class Store:
    """The data files of one directory, kept in memory and written back safely.

    One Store serves one process. Its methods may be called from several
    threads, which then take turns. Create the Store after any fork, or call
    nothing on it before the fork: the lock file is reopened in a child
    process, so that parent and child never share one lock.
    """

    def __init__(self, data_dir: str, *, indent: int = 2) -> None:
        self.data_dir = os.fspath(data_dir)
        self.indent = indent
        self._mutex = threading.Lock()
        self._mutex_owner: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._lock_pid: Optional[int] = None
        # Generation at the last full load; None forces a reload.
        self._generation: Optional[int] = None
        self._data = Data({}, {})
        self._files: Dict[str, _FileState] = {
            SESSIONS_FILE: _FileState(),
            TAKEOVERS_FILE: _FileState(),
        }
        self._temps_removed = False
        self._invalid_generation_logged: Optional[bytes] = None
        #: Number of times a file was read from disk, for monitoring and tests.
        self.reload_count = 0

    @property
    def generation(self) -> Optional[int]:
        """The generation at the last full load, or None before the first one."""
        return self._generation

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Data]:
        """Hold the exclusive lock, yield the current data, then write what changed.

        The data is reloaded first when order-reset replaced the files or
        another process wrote them. When the block raises, nothing is written
        and the next transaction reloads both files, dropping the changes
        made in memory.
        """
        with self._locked(fcntl.LOCK_EX):
            try:
                self._refresh()
                yield self._data
                self._save()
            except BaseException:
                self._generation = None
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Data]:
        """Hold the lock in shared mode and yield the current data, read-only."""
        with self._locked(fcntl.LOCK_SH):
            try:
                self._refresh()
            except BaseException:
                self._generation = None
                raise
            yield self._data

    @contextlib.contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        me = threading.get_ident()
        if self._mutex_owner == me:
            # Waiting for the mutex this thread holds would never end.
            raise RuntimeError("Store transactions cannot be nested")
        with self._mutex:
            self._mutex_owner = me
            try:
                fd = self._open_lock()
                fcntl.flock(fd, operation)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                self._mutex_owner = None

    def _open_lock(self) -> int:
        if self._lock_fd is not None and self._lock_pid == os.getpid():
            return self._lock_fd
        path = os.path.join(self.data_dir, LOCK_FILE)
        # order-reset records its holder in the lock file and never replaces
        # it, so it is opened without O_TRUNC and never recreated.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._lock_fd = os.open(path, flags, 0o600)
        self._lock_pid = os.getpid()
        return self._lock_fd

    def _refresh(self) -> None:
        if not self._temps_removed:
            self._remove_stale_temps()
            self._temps_removed = True
        generation = self._read_generation()
        if generation is None or generation != self._generation:
            if self._generation is not None:
                log.info(
                    "reloading %s: generation changed from %s to %s, so order-reset replaced the files",
                    self.data_dir,
                    self._generation,
                    generation,
                )
            self._data = Data(self._load(SESSIONS_FILE), self._load(TAKEOVERS_FILE))
            self._generation = generation
            return
        for name in (SESSIONS_FILE, TAKEOVERS_FILE):
            if _signature(self._path(name)) != self._files[name].signature:
                log.info("reloading %s: another process replaced it", self._path(name))
                content = self._load(name)
                if name == SESSIONS_FILE:
                    self._data.sessions = content
                else:
                    self._data.takeover_requests = content

    def _read_generation(self) -> Optional[int]:
        """Return the generation, 0 when the file is missing, None when it is invalid.

        An invalid file makes every transaction reload, which costs a read
        but never writes stale memory back.
        """
        path = os.path.join(self.data_dir, GENERATION_FILE)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        except OSError as error:
            self._log_invalid_generation(path, repr(error).encode())
            return None
        try:
            content = os.read(fd, 65)
        finally:
            os.close(fd)
        match = _GENERATION_PATTERN.fullmatch(content)
        if match is None:
            self._log_invalid_generation(path, content)
            return None
        return int(match.group(1))

    def _log_invalid_generation(self, path: str, content: bytes) -> None:
        # Logged once per distinct content, because every transaction reads it.
        if content != self._invalid_generation_logged:
            log.warning(
                "generation file %s is invalid (%r); reloading the data on every transaction until it contains one decimal integer",
                path,
                content,
            )
            self._invalid_generation_logged = content

    def _path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def _load(self, name: str) -> dict:
        """Read one file; a missing file is an empty object.

        Raises ValueError for a file that is not a JSON object, rather than
        replace it with memory.
        """
        path = self._path(name)
        state = self._files[name]
        self.reload_count += 1
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            state.signature = None
            # A missing file reads as {}, and stays missing until it changes.
            state.digest = hashlib.sha256(b"{}").digest()
            return {}
        with os.fdopen(fd, "rb") as file:
            content = file.read()
            info = os.fstat(file.fileno())
        value = json.loads(content)
        if not isinstance(value, dict):
            raise ValueError(f"{path} is not a JSON object")
        state.signature = _signature_of(info)
        state.digest = hashlib.sha256(content).digest()
        return value

    def _save(self) -> None:
        for name, value in (
            (SESSIONS_FILE, self._data.sessions),
            (TAKEOVERS_FILE, self._data.takeover_requests),
        ):
            content = json.dumps(value, indent=self.indent).encode()
            if hashlib.sha256(content).digest() == self._files[name].digest:
                continue
            self._write(name, content)

    def _write(self, name: str, content: bytes) -> None:
        path = self._path(name)
        try:
            previous: Optional[os.stat_result] = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            previous = None
        temp = self._path(f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        # A new file gets 0666 minus the umask, as open(path, "w") gives it.
        fd = os.open(temp, flags, 0o666 if previous is None else 0o600)
        try:
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                if previous is not None:
                    _keep_owner_and_mode(fd, previous, path)
                    _move_mtime_past(fd, previous)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(self.data_dir)
        state = self._files[name]
        state.signature = _signature(path)
        state.digest = hashlib.sha256(content).digest()

    def _remove_stale_temps(self) -> None:
        """Remove temporary files of Stores that were killed while writing.

        Called under the lock, while no other Store can be writing one.
        """
        prefixes = tuple(f".{name}." for name in (SESSIONS_FILE, TAKEOVERS_FILE))
        for entry in os.scandir(self.data_dir):
            if entry.name.startswith(prefixes) and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                log.info("removed temporary file %s left by a killed writer", entry.path)


def _signature_of(info: os.stat_result) -> Signature:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _signature(path: str) -> Optional[Signature]:
    try:
        return _signature_of(os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return None


def _keep_owner_and_mode(fd: int, previous: os.stat_result, path: str) -> None:
    """Give the new file the mode, owner and group of the file it replaces.

    A process that may not give the owner logs a warning and writes anyway,
    because losing the change would be worse than a changed owner.
    """
    current = os.fstat(fd)
    if (current.st_uid, current.st_gid) != (previous.st_uid, previous.st_gid):
        try:
            os.fchown(fd, previous.st_uid, previous.st_gid)
        except PermissionError:
            log.warning(
                "cannot keep owner %d:%d of %s; the new file belongs to %d:%d",
                previous.st_uid,
                previous.st_gid,
                path,
                current.st_uid,
                current.st_gid,
            )
    # After fchown, which clears the set-user-id and set-group-id bits.
    os.fchmod(fd, stat.S_IMODE(previous.st_mode))


def _move_mtime_past(fd: int, previous: os.stat_result) -> None:
    """Make the new file's modification time later than the replaced file's.

    Two writes within one tick of a coarse file system clock could otherwise
    leave two versions with the same size and time, and, as inode numbers are
    reused, the same signature, so another Store would miss the second one.
    """
    current = os.fstat(fd)
    for step in _MTIME_STEPS_NS:
        if current.st_mtime_ns > previous.st_mtime_ns:
            return
        os.utime(fd, ns=(current.st_atime_ns, previous.st_mtime_ns + step))
        current = os.fstat(fd)
    if current.st_mtime_ns <= previous.st_mtime_ns:
        raise OSError(errno.EIO, "cannot set a modification time later than the replaced file's")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
