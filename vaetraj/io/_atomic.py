"""Atomic file output: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from vaetraj._interrupt import stop_requested
from vaetraj._memory import size_text
from vaetraj.errors import OutputError, UsageError, VaetrajError, VaetrajWarning, WriteError

# errors that mean the medium failed us, not that the path was wrong
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EFBIG}


def _refuse_input_as_output(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]
) -> None:
    """Refuse an output that is one of the command's inputs: the same file by name, by a
    symbolic link or by a hard link. --overwrite would otherwise replace the data (or
    the model) with what was made from it."""
    path = Path(path)
    for given in inputs:
        if given is None:
            continue
        source = Path(given)
        try:
            same = os.path.samefile(path, source)
        except OSError:  # one of them does not exist (yet): compare the names
            # (realpath, unlike Path.resolve, does not raise on a symbolic-link loop)
            same = os.path.realpath(path) == os.path.realpath(source)
        if same:
            raise UsageError(
                f"output is the input {source}: it would be replaced; write to another file",
                path=path,
            )


def check_output(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Refuse an output that is one of `inputs`, an existing output (unless
    `overwrite`) or one whose folder is unusable."""
    path = Path(path)
    _refuse_input_as_output(path, inputs)
    if os.path.lexists(path) and not path.exists():
        raise OutputError("output is a symbolic link that leads to no file (a loop?)", path=path)
    if path.exists() and not overwrite:
        raise OutputError("output exists (pass --overwrite to replace it)", path=path)
    if path.is_dir():
        raise OutputError("output is a folder", path=path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot create output: folder {path.parent} does not exist", path=path)
    return path


def check_folder_output(
    folder: str | os.PathLike,
    names: Iterable[str],
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Refuse, before any work, a folder of outputs (figures) that cannot be made: a
    file or a dangling link where the folder should be, no existing folder above it,
    or an output `names` inside it that exists (unless `overwrite`)."""
    folder = Path(folder)
    inputs = list(inputs)
    if os.path.lexists(folder) and not folder.exists():
        raise OutputError("a symbolic link that leads to no folder (a loop?)", path=folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("is a file, not a folder", path=folder)
    if folder.is_dir():
        for name in names:
            check_output(folder / name, overwrite=overwrite, inputs=inputs)
        return folder
    above = next((p for p in folder.absolute().parents if os.path.lexists(p)), None)
    if above is None or not above.is_dir():
        raise OutputError(f"cannot create the folder: {above} is not a folder", path=folder)
    return folder


def make_folder(folder: Path) -> None:
    """Make an output folder (and those above it); a medium that refuses is a
    WriteError (exit 74), anything else an OutputError (73)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if error.errno in _WRITE_ERRNOS:
            raise WriteError(f"cannot write: {describe_os_error(error)}", path=folder) from None
        raise OutputError(
            f"cannot create the folder: {describe_os_error(error)}", path=folder
        ) from None


def describe_os_error(error: OSError) -> str:
    return error.strerror or str(error)


# what libraries say when the medium failed them without an OSError we can read the
# errno of: HDF5 (a RuntimeError whose text holds the errno), mdtraj's DCD writer (a
# TypeError after a short write)
_MEDIUM_TEXTS = {
    errno.ENOSPC: ("No space left on device", "errno = 28"),
    errno.EDQUOT: ("Disk quota exceeded", "errno = 122"),
    errno.EROFS: ("Read-only file system", "errno = 30"),
}
_FULL_BYTES = 64 << 10  # less free than this after a failed write: the disk is full


def medium_failure(error: BaseException, folder: Path) -> str | None:
    """The reason a write failed if the medium failed it (disk full, quota, read-only,
    I/O error), else None. Looks at the errno, then at the text libraries give, then at
    the free space left in `folder`."""
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
        return os.strerror(error.errno)
    text = str(error)
    for number, phrases in _MEDIUM_TEXTS.items():
        if any(phrase in text for phrase in phrases):
            return os.strerror(number)
    free = free_bytes(folder)
    if free is not None and free < _FULL_BYTES:
        return os.strerror(errno.ENOSPC)
    return None


def free_bytes(folder: Path) -> int | None:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def require_space(path: Path, needed: int) -> None:
    """Refuse (WriteError, exit 74) a write of about `needed` bytes where the folder has
    less free: better before the work, and before HDF5 meets a full disk (it cannot
    recover from one)."""
    free = free_bytes(path.parent)
    if free is not None and needed + _FULL_BYTES > free:
        raise WriteError(
            f"not enough space: writing needs about {size_text(needed)}, {size_text(free)} free",
            path=path,
        )


_QUIET_SECONDS = 60  # a temporary untouched this long, of a dead PID, is stale
_DAY = 86400


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the `.NAME.PID.*.tmp` files a killed run left beside `path` (kill -9 gives
    no chance to clean up) and say so in a warning. Stale: its PID is no live process
    and it has not been written to for a minute (on a file system shared between
    machines a PID of another one means nothing here), or it is a day old. Temporaries
    of a live run, and names that are not ours, are left alone."""
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            age = time.time() - candidate.stat().st_mtime
            if age < _DAY and (_alive(int(pid)) or age < _QUIET_SECONDS):
                continue
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate.name)
    if removed:
        warnings.warn(
            f"{path}: removed {len(removed)} temporary file(s) a killed run left "
            f"({', '.join(removed)})",
            VaetrajWarning,
            stacklevel=3,
        )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, *, overwrite: bool = False, during_stop: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is flushed and renamed to
    `path`, on any failure (or interrupt) it is removed. A killed process leaves at most
    a hidden `.NAME.*.tmp` file, never a half-written file under the final name. A
    write the medium failed (disk full, read-only, quota) is a WriteError (exit 74),
    whatever the writing library raised. A stop request (a signal) removes the file
    instead of renaming it, unless `during_stop` (the checkpoint an interrupt writes).
    """
    path = check_output(path, overwrite=overwrite)
    _remove_stale_temporaries(path)
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as error:
        if error.errno in _WRITE_ERRNOS:
            raise WriteError(f"cannot write: {describe_os_error(error)}", path=path) from None
        raise OutputError(f"cannot create output: {describe_os_error(error)}", path=path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs are ordinary files
    try:
        yield tmp
        if stop_requested() and not during_stop:  # an interrupt Python swallowed
            raise KeyboardInterrupt
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception as error:
        # a writer's own WriteError carries the library's error as its context; our other
        # errors are what they say; the free space is judged before the temporary file
        # gives its space back
        if isinstance(error, WriteError):
            cause = error.__context__
        else:
            cause = None if isinstance(error, VaetrajError) else error
        reason = None if cause is None else medium_failure(cause, path.parent)
        tmp.unlink(missing_ok=True)
        if reason is None:
            raise
        raise WriteError(f"write failed: {reason}", path=path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_h5_bytes(tmp: Path, fill) -> None:
    """An HDF5 file built in memory by `fill(handle)`, then written to `tmp` with plain
    writes: a full disk is then an OSError we handle, never an HDF5 write failure (from
    which HDF5 cannot recover). For files that fit in memory (models, checkpoints)."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        fill(handle)
    with open(tmp, "wb") as handle:
        handle.write(buffer.getbuffer())


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold a lock on `path` (the file `.NAME.lock` beside it) for a run's lifetime: a
    second vaetraj run on the same output or checkpoint is refused (OutputError, 73)
    with the holder's PID and host. The kernel releases the lock of a killed run, so a
    stale lock file never blocks. Where no lock file can be made (a read-only folder)
    the run goes on without one: its output fails there anyway."""
    import fcntl
    import socket

    lock = path.parent / f".{path.name}.lock"
    while True:
        try:
            handle = open(lock, "a+")
        except OSError:
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "of unknown PID"
            handle.close()
            raise OutputError(
                f"another vaetraj run ({holder}) is writing this file; wait for it to "
                "finish or write elsewhere",
                path=path,
            ) from None
        try:  # the file may have been removed by the run that held it: lock the new one
            same = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except OSError:
            same = False
        if same:
            break
        handle.close()
    try:
        with contextlib.suppress(OSError):  # the holder's name is a courtesy (full disk)
            os.ftruncate(handle.fileno(), 0)
            os.pwrite(handle.fileno(), f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        handle.close()
