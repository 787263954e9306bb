"""Atomic file and directory writes: a reader never sees a half-written artifact.

Also the guards every writing command shares: an output must not overlap its inputs, a non-empty output is only
replaced on request, one writer at a time holds an output directory (an flock beside it), and a full disk ends in one
line naming the path instead of a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class DiskFullError(OSError):
    """A write ran out of space (or hit a file-size limit); the message names the path."""

    def __str__(self) -> str:
        return str(self.strerror)


class OutputLockedError(RuntimeError):
    """Another process is writing the same output directory."""


def disk_full(exc: BaseException, path: str | Path) -> DiskFullError:
    """A DiskFullError naming `path`, for an OSError whose errno says the disk (or a size limit) is exhausted."""
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
    return DiskFullError(getattr(exc, "errno", errno.ENOSPC),
                         f"{path}: cannot write ({reason}); free some space or choose another --out; "
                         f"nothing partial was kept")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise disk_full(exc, path) from None
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp dir beside `final`; on success rename it to `final`, on any error remove it.

    With overwrite=True an existing `final` is replaced only after the new one is complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists: choose another path or pass --overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise disk_full(exc, final) from None
        raise


def read_json(path: str | Path, missing_hint: str = "", expect: Optional[type] = dict,
              error: Optional[type[Exception]] = None) -> Any:
    """Parse a JSON file; a missing file, bad JSON or (by default) a top level that is not an object raises an error
    naming the path (and a hint on what to do). `error`: the exception type for all three, for callers whose
    errors have their own type (default: FileNotFoundError for a missing file, ValueError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise (error or FileNotFoundError)(f"{path}: not found{' (' + missing_hint + ')' if missing_hint else ''}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise (error or ValueError)(f"{path}: not valid JSON ({exc})") from None
    if expect is not None and not isinstance(doc, expect):
        kind = {dict: "an object", list: "an array"}.get(expect, expect.__name__)
        raise (error or ValueError)(f"{path}: the top level must be {kind}, got {type(doc).__name__}")
    return doc


# ------------------------------------------------------------------------------------------------ output guards
def refuse_overlap(out: str | Path, **inputs: Optional[str | Path]) -> None:
    """Refuse an output that is, contains or lies inside one of the inputs (`--root=R`, `--model=M`, ...): writing
    or replacing it would destroy the input. Checked on resolved paths (symlinks followed) before anything is touched.
    """
    o = Path(out).resolve()
    for flag, value in inputs.items():
        if value is None:
            continue
        i = Path(value).resolve()
        name = "--" + flag.replace("_", "-")
        if o == i:
            why = "is the same path as"
        elif o in i.parents:
            why = "contains"
        elif i in o.parents:
            why = "lies inside"
        else:
            continue
        raise ValueError(f"--out {out} {why} {name} {value}: a command never writes into or replaces its own "
                         f"input; choose an --out outside {value}")


def check_out_path(out: str | Path) -> None:
    """Refuse an output path under a regular file, or that is itself a file, naming the file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a directory")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"--out {out}: {parent} is a file, not a directory")
            break


def refuse_nonempty(out: str | Path, overwrite: bool, resume: bool = False) -> None:
    """A fresh run into a non-empty directory would silently replace an earlier run: refuse unless asked to."""
    out = Path(out)
    if resume or overwrite or not out.is_dir():
        return
    if any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty (an earlier run?): pass --resume to continue it, "
                              f"--overwrite to replace it, or choose another --out")


def lock_path(out: str | Path) -> Path:
    out = Path(out).absolute()
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold an exclusive flock on `.<name>.lock` beside `out` while a command writes it; a second writer is refused.

    The lock lives beside the directory (not inside) so that a directory replaced by rename stays locked and the
    lock file never becomes part of an output (DVC tracks prepared directories). The kernel releases it on exit,
    however the process ends."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise OutputLockedError(f"--out {out} is being written by process {holder} (lock {path}); wait for it "
                                    f"to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
