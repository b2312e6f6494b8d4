"""Small I/O layer shared by every stage: atomic writes, strict JSON, CSV tables, logging set-up."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import math
import os
import secrets
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("sieve")


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats so that the JSON is strict."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (``allow_nan=False``): NaN becomes null, +-inf the strings "inf"/"-inf"."""
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def current_umask() -> int:
    """The process's umask. Read from /proc (Linux) where it can be, since ``os.umask`` can only be read by
    setting it, which briefly changes it for every thread (DataLoader workers, h5py)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    A crash leaves no file that looks complete: either the old file, or nothing, never a half-written one.
    The file gets the mode of an ordinary new file (:func:`ordinary_file_mode`), not the temporary file's
    owner-only 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix if suffix is not None else ".partial"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, ordinary_file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` as :func:`atomic_path` would (a temporary ``.<name>.<random>.partial`` beside it,
    renamed onto it), in fewer system calls, for bytes already in memory: the temporary file is created with
    mode 0o666, which the kernel reduces by the umask as it does for ``open(path, "w")``, so no chmod (and no
    reading of the umask) follows (in a folder with a default ACL, the ACL gives the mode, as it does for
    ``open``). The parent directory is created when it is missing. A temporary file that disappears before the
    rename (another job cleaning partial files) raises FileNotFoundError."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # another writer's name: draw again
            continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
        break
    else:
        raise FileExistsError(f"no free temporary name beside {path} in 100 tries")
    try:
        with open(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_bytes_atomic(path, (dumps(obj) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def csv_cell(value: Any) -> Any:
    """One CSV cell, the same convention in every file sieve writes: a boolean is ``true`` / ``false`` (a 0/1
    flag meant to be summed, such as ar.csv's ``kept``, is an int and stays 0/1), a float its shortest
    round-trip form with NaN and None empty."""
    if value is True or value is False or isinstance(value, np.bool_):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(float(value))
    return "" if value is None else value


def write_csv(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    line_terminator: str = "\n",
) -> None:
    """Write ``rows`` under the header ``columns``, atomically, every cell by :func:`csv_cell`. A row is a
    mapping (a missing key is an empty cell) or a sequence in column order."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator=line_terminator)
        w.writerow(columns)
        for i, r in enumerate(rows):
            if isinstance(r, Mapping):
                cells = [r.get(k, "") for k in columns]
            elif len(r) == len(columns):
                cells = list(r)
            else:
                raise ValueError(f"{path}: row {i} has {len(r)} cells for {len(columns)} columns")
            w.writerow([csv_cell(v) for v in cells])


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """A CSV file with a header as one dict per row (every value a string)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def stable_hash(*parts: Any, n: int = 16) -> str:
    """A short, stable hex digest of JSON-serialisable parts (key order independent)."""
    payload = json.dumps(_jsonable(list(parts)), sort_keys=True, ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:n]


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)[:16]


def local_file_fingerprints(
    spec: dict[str, Any], keys: tuple[str, ...] = ("weights", "spec", "model_config", "pretrained")
) -> dict[str, str]:
    """Content digests of the local files a backend spec names (a checkpoint, a world spec): keys of
    content-addressed caches include them, so editing or retraining a file in place never reuses stale
    results. Hub ids, URLs and missing paths give nothing (:func:`~sieve.backends.refs.parse_ref` decides)."""
    from .backends.refs import parse_ref

    out = {}
    for key in keys:
        value = spec.get(key)
        if isinstance(value, str) and value.strip():
            ref = parse_ref(value)
            path = Path(ref.value)
            if ref.is_local and path.is_file():
                st = path.stat()
                out[key] = _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)
    return out


class LineStream(io.TextIOBase):
    """A log file as the stream of progress bars: a carriage return (a bar redrawing its line on a terminal)
    starts a new line instead, so that the log reads top to bottom, each update a line of its own and the
    bar's final state kept, and log records written between two updates never land inside a bar's line."""

    def __init__(self, fh: io.TextIOBase) -> None:
        self._fh = fh
        self._line_start = True

    def write(self, text: str) -> int:
        for i, part in enumerate(text.split("\r")):
            if i and not self._line_start:
                self._fh.write("\n")
                self._line_start = True
            if not part.endswith("\n"):
                part = part.rstrip(" ")  # the blanks a bar pads a shorter redraw with
            if part:
                self._fh.write(part)
                self._line_start = part.endswith("\n")
        return len(text)

    def start_line(self) -> None:
        """End a bar's line before a log record, which then starts a line of its own."""
        if not self._line_start:
            self._fh.write("\n")
            self._line_start = True

    def flush(self) -> None:
        self._fh.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # tqdm draws Unicode bars when the stream says it can take them
        return getattr(self._fh, "encoding", None) or "utf-8"


class _RecordHandler(logging.StreamHandler):
    """Writes log records to a :class:`LineStream`, each on a line of its own (after a bar's line)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.start_line()
        super().emit(record)


def setup_logging(
    log_file: str | os.PathLike[str] | None = None,
    level: int = logging.INFO,
    stream: io.TextIOBase | None = None,
) -> logging.Logger:
    """Log to stderr and to ``stream`` (a rule's log, opened by :func:`script_logging`) or ``log_file``;
    redirect Python warnings there too."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if stream is not None:
        handlers.append(_RecordHandler(stream))
    elif log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        # a file name that is not valid UTF-8 is logged with \x escapes instead of failing the log call
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8", errors="backslashreplace"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)
    logging.captureWarnings(True)
    return log


@contextlib.contextmanager
def script_logging(log_file: str | os.PathLike[str] | None) -> Iterator[logging.Logger]:
    """For Snakemake scripts: log records and stderr (progress bars, library prints) go to the rule's log file
    through one stream (:class:`LineStream`), so neither overwrites the other; any error is recorded as one
    clear ``ERROR`` line (plus traceback) in the log before it propagates."""
    if not log_file:
        logger = setup_logging()
        yield logger
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    # a file name that is not valid UTF-8 is logged with \x escapes instead of failing the log call
    with open(log_file, "w", encoding="utf-8", errors="backslashreplace", buffering=1) as fh:
        stream = LineStream(fh)
        logger = setup_logging(stream=stream)
        old, sys.stderr = sys.stderr, stream
        try:
            yield logger
        except Exception as exc:
            logger.error("%s: %s", type(exc).__name__, exc, exc_info=True)
            raise
        finally:
            sys.stderr = old
            stream.flush()
            for h in list(logging.getLogger().handlers):
                if isinstance(h, logging.StreamHandler) and h.stream is stream:
                    logging.getLogger().removeHandler(h)
