"""Writing files safely: atomic writes, up-front checks that a folder can be written, and
OS errors (full disk, read-only folder, no permission) as one located line.

Every layer writes through here (datasets, checkpoints, run folders, reports), so a full
disk reads the same everywhere: ``cannot write PATH: no space left on the device; free
some space or choose another --out``.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process umask (read without a window where it is changed, where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class StorageError(ValueError):
    """A file or folder that cannot be written (full disk, read-only folder, no
    permission): one line naming the path, and what to do about it."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 hint: str | None = None):
        self.path = Path(path) if path is not None else None
        self.hint = hint
        super().__init__(message + (f"; {hint}" if hint else ""))


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder",
    errno.EFBIG: "the file is too large for the file system",
    errno.ENAMETOOLONG: "the name is too long",
}

#: What to do about it, by errno (the caller may add which option to change).
_HINTS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space",
    errno.EROFS: "choose a writable folder",
    errno.EACCES: "choose a folder you may write in",
    errno.EPERM: "choose a folder you may write in",
}


def storage_error(exc: OSError, path: str | os.PathLike, what: str = "write",
                  hint: str | None = None, note: str | None = None) -> StorageError:
    """An OS error while writing ``path`` as one located line: the path, the reason in
    words (no errno soup, no driver dump) and a hint (``hint``: the option that picks
    another place; ``note``: appended)."""
    reason = _REASONS.get(exc.errno) or (exc.strerror or type(exc).__name__).lower()
    advice = "; ".join(a for a in (_advice(exc.errno, hint), note) if a) or None
    return StorageError(f"cannot {what} {path}: {reason}", path, advice)


def _advice(code: int | None, hint: str | None) -> str | None:
    """The generic advice for an errno, or the caller's (which option picks another
    place); after "free some space" for a full disk."""
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"free some space or {hint}" if hint else _HINTS[code]
    return hint or _HINTS.get(code)


def _probe_target(path: Path) -> Path:
    """The folder where ``path`` (a folder, maybe not created yet) would be created: itself
    if it exists, else its nearest existing ancestor."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    return probe


def ensure_writable(folder: str | os.PathLike, hint: str | None = None,
                    need_bytes: int = 0) -> None:
    """Check, before any work is done, that files can be written in ``folder`` (or where it
    would be created): a test file is written and removed, and with ``need_bytes`` the free
    space is compared with it. Raises :class:`StorageError`."""
    folder = Path(folder)
    probe = _probe_target(folder)
    if probe.exists() and not probe.is_dir():
        raise StorageError(f"cannot write in {folder}: {probe} is a file, not a folder", probe,
                           hint)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".physml-write-test.", dir=probe)
    except OSError as exc:
        raise storage_error(exc, folder, "write in", hint) from None
    try:
        try:
            os.write(fd, b"physml")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(exc, folder, "write in", hint) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    if need_bytes:
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            return
        if free < need_bytes:
            raise StorageError(
                f"cannot write in {folder}: about {_size(need_bytes)} are needed and "
                f"{_size(free)} are free", folder, _advice(errno.ENOSPC, hint))


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def atomic_write_bytes(path: Path, data: bytes, hint: str | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.
    On any failure the temporary file is removed and the previous ``path`` is untouched; an
    OS error (full disk, read-only folder) becomes a :class:`StorageError` naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            # mkstemp creates 0600; the final file gets the mode open() would give it.
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise storage_error(exc, path, hint=hint) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))




def describe_os_error(exc: OSError) -> str:
    """Any OS error as one line: the path it concerns (where known), the reason in words
    and a hint — the CLI's last word on errors no caller located."""
    reason = _REASONS.get(exc.errno) or (exc.strerror or str(exc) or type(exc).__name__)
    advice = _HINTS.get(exc.errno)
    where = exc.filename if exc.filename is not None else None
    head = f"{where}: {reason}" if where else f"a file operation failed: {reason}"
    return head + (f"; {advice}" if advice else "")
