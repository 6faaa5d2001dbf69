"""Atomic file output: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from vaetraj.errors import OutputError, UsageError, WriteError

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
            same = path.resolve() == source.resolve()
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
    if path.exists() and not overwrite:
        raise OutputError("output exists (pass --overwrite to replace it)", path=path)
    if path.is_dir():
        raise OutputError("output is a folder", path=path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot create output: folder {path.parent} does not exist", path=path)
    return path


def describe_os_error(error: OSError) -> str:
    return error.strerror or str(error)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is flushed and renamed to
    `path`, on any failure (or interrupt) it is removed. A killed process leaves at most
    a hidden `.NAME.*.tmp` file, never a half-written file under the final name.
    """
    path = check_output(path, overwrite=overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"cannot create output: {describe_os_error(error)}", path=path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno in _WRITE_ERRNOS:
            raise WriteError(f"write failed: {describe_os_error(error)}", path=path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
