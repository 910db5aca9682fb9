"""Request traces: read and write CSV and libCacheSim oracleGeneral files.

Theory of operation
-------------------
A :class:`Trace` is a set of parallel columns (``array`` objects, not per-request
objects), so a trace of millions of requests costs a few bytes per field and replaying
it is a tight loop over C-level sequences:

- ``times``: request time (float seconds; trace time, never the wall clock),
- ``keys``: object ids as unsigned 64-bit ints. CSV keys are strings, mapped to dense
  ids 0, 1, 2... in order of first appearance; ``key_names[i]`` is the string of id ``i``.
  Binary traces carry numeric ids, kept as they are (``key_names`` is None).
- ``sizes``: object size in bytes (>= 0),
- ``regions``/``sites``: optional dense ids into ``region_names``/``site_names``.

Formats
-------
- CSV (UTF-8, a BOM is allowed): a header line ``time,key,size`` or
  ``time,key,size,region,site``, then one request per line. ``time`` is a number,
  ``size`` a whole number of bytes. Fields may be quoted (keys that hold commas). Blank
  lines are skipped.
- oracleGeneral (libCacheSim's binary format, see its FAQ.md and
  ``traceReader/customizedReader/oracleGeneralBin.h``): packed little-endian records of
  24 bytes, ``uint32 clock_time, uint64 obj_id, uint32 obj_size, int64
  next_access_vtime``. ``next_access_vtime`` is the 1-based index of the next request
  for the same object, -1 if none (libCacheSim's ``traceConv``); it is ignored when
  reading and computed when writing.

Compression
-----------
Either format may be compressed with gzip, bzip2, xz or zstd (libCacheSim publishes its
traces as ``.oracleGeneral.zst``). The compression is told by the file's first bytes,
whatever its name; a compression suffix (``.gz``, ``.bz2``, ``.xz``, ``.zst``) is
dropped before the format is taken from the name, and a name with such a suffix whose
content is not that kind of data is refused. The content is decompressed as it is
read; corrupt or truncated data is a :class:`~edgesim.errors.TraceError`.

Errors
------
Every problem is a :class:`~edgesim.errors.TraceError` naming the file, the line (CSV)
or record index (binary) and what was expected. Parsing runs a fast path over all rows;
only a row that fails is looked at again to say exactly what is wrong with it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import math
import os
import re
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Literal, TypeVar, cast

from edgesim._atomic import is_special
from edgesim.errors import TraceError

__all__ = [
    "CSV",
    "ORACLE_GENERAL",
    "Trace",
    "TraceFormat",
    "compression_of",
    "format_by_name",
    "read_trace",
    "sniff_format",
    "write_trace",
]

T = TypeVar("T")

TraceFormat = Literal["csv", "oracle-general"]
CSV: TraceFormat = "csv"
ORACLE_GENERAL: TraceFormat = "oracle-general"

# libCacheSim's oracleGeneral record: uint32 time, uint64 id, uint32 size, int64 next vtime.
RECORD_SIZE = 24
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1

HEADER_BASIC = ("time", "key", "size")
HEADER_PLACED = ("time", "key", "size", "region", "site")
_EXPECTED_HEADER = "'time,key,size' or 'time,key,size,region,site'"

_BINARY_SUFFIXES = (".oraclegeneral", ".bin")
# Compressions, by their first bytes and by the suffixes that name them.
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
# A binary trace is read whole, at most a quarter of this machine's memory (a plain
# file's size is checked first; compressed data is counted as it is decompressed, in
# chunks of this many bytes: a small file can expand to more than the machine holds).
_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """A request trace as parallel columns (see the module docstring).

    Build one with :func:`read_trace` or :meth:`from_rows`; do not mutate the arrays.
    """

    times: array[float]
    keys: array[int]
    sizes: array[int]
    regions: array[int] | None = None
    sites: array[int] | None = None
    key_names: tuple[str, ...] | None = None
    region_names: tuple[str, ...] = ()
    site_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.keys)
        if len(self.times) != n or len(self.sizes) != n:
            raise ValueError("times, keys and sizes must have the same length")
        if (self.regions is None) != (self.sites is None):
            raise ValueError("regions and sites come together")
        if (
            self.regions is not None
            and self.sites is not None
            and (len(self.regions) != n or len(self.sites) != n)
        ):
            raise ValueError("regions and sites must have one entry per request")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_placement(self) -> bool:
        """Whether requests carry a region and a site."""
        return self.regions is not None

    @property
    def n_objects(self) -> int:
        """The number of distinct keys."""
        return len(self.key_names) if self.key_names is not None else len(set(self.keys))

    def rows(self) -> Iterator[tuple[float, str | int, int] | tuple[float, str | int, int, str, str]]:
        """Requests as tuples ``(time, key, size)`` or ``(time, key, size, region, site)``.

        Keys are the CSV strings when the trace has names, else the numeric ids. This is
        the slow, convenient view; replay uses the columns.
        """
        names = self.key_names
        keys: Iterable[str | int] = self.keys if names is None else (names[k] for k in self.keys)
        if self.regions is None or self.sites is None:
            yield from zip(self.times, keys, self.sizes, strict=True)
            return
        rn, sn = self.region_names, self.site_names
        for t, k, s, r, site in zip(self.times, keys, self.sizes, self.regions, self.sites, strict=True):
            yield (t, k, s, rn[r], sn[site])

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[object]]) -> Trace:
        """A trace from ``(time, key, size[, region, site])`` tuples (for tests and tools).

        Integer keys are kept as object ids (they must fit in uint64); any other keys are
        turned into strings and mapped to dense ids, as the CSV reader does. Keys must
        be all integers or all non-integers.

        Raises:
            ValueError: mixed key kinds, a negative size, or rows of different widths.
        """
        times: array[float] = array("d")
        keys: array[int] = array("Q")
        sizes: array[int] = array("q")
        regions: array[int] = array("q")
        sites: array[int] = array("q")
        ids: dict[str, int] = {}
        rids: dict[str, int] = {}
        sids: dict[str, int] = {}
        width = None
        numeric = None
        for row in rows:
            if width is None:
                width = len(row)
                if width not in (3, 5):
                    raise ValueError("rows must be (time, key, size) or (time, key, size, region, site)")
            elif len(row) != width:
                raise ValueError("all rows must have the same number of fields")
            t, k, s = row[0], row[1], row[2]
            is_int = isinstance(k, int) and not isinstance(k, bool)
            if numeric is None:
                numeric = is_int
            elif numeric != is_int:
                raise ValueError("keys must be all integers or all strings")
            if is_int:
                keys.append(k)  # type: ignore[arg-type]
            else:
                name = str(k)
                kid = ids.get(name)
                if kid is None:
                    kid = ids[name] = len(ids)
                keys.append(kid)
            if not isinstance(s, int) or s < 0:
                raise ValueError(f"size must be a non-negative int, not {s!r}")
            sizes.append(s)
            times.append(float(t))  # type: ignore[arg-type]
            if width == 5:
                regions.append(rids.setdefault(str(row[3]), len(rids)))
                sites.append(sids.setdefault(str(row[4]), len(sids)))
        placed = width == 5
        return cls(
            times,
            keys,
            sizes,
            regions if placed else None,
            sites if placed else None,
            None if numeric or (numeric is None and not ids) else tuple(ids),
            tuple(rids),
            tuple(sids),
        )


# ---- reading ------------------------------------------------------------------------


def sniff_format(path: str | os.PathLike[str]) -> TraceFormat:
    """The format of a trace file: by name, else by content.

    A compression suffix is dropped first (``x.csv.gz`` is a compressed CSV). Then
    ``.csv`` is CSV; ``.oracleGeneral`` and ``.bin`` (also ``x.oracleGeneral.bin``) are
    oracleGeneral. Otherwise a file whose first line (decompressed) is the CSV header,
    or is printable text, is CSV, and anything else is taken as oracleGeneral.

    Raises:
        TraceError: the file cannot be opened, or its compressed data is corrupt.
    """
    name = os.fspath(path)
    by_name = format_by_name(name)
    if by_name is not None:
        return by_name
    with _opened(name) as (f, _):
        head = f.read(256)
    head = head.removeprefix(b"\xef\xbb\xbf")
    if head.lower().startswith(b"time,"):
        return CSV
    first_line = head.split(b"\n", 1)[0]
    # (a record whose time is 10, 266, ... starts with b"\n": an empty first line is binary)
    if first_line and all(32 <= b < 127 or b in b"\t\r" for b in first_line):
        return CSV
    return ORACLE_GENERAL


def format_by_name(path: str | os.PathLike[str]) -> TraceFormat | None:
    """The format a trace file's name gives (see :func:`sniff_format`), or None."""
    lower = _uncompressed_name(os.fspath(path))[0].lower()
    if lower.endswith(".csv"):
        return CSV
    if lower.endswith(_BINARY_SUFFIXES):
        return ORACLE_GENERAL
    return None


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """The compression of a trace file (``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zstd"``),
    or None for a plain file: by its first bytes (see the module's notes).

    Raises:
        TraceError: the file cannot be opened, or its name says compressed and its
            content is not.
    """
    with _opened(os.fspath(path)) as (_, kind):
        return kind


def _uncompressed_name(name: str) -> tuple[str, str | None]:
    """``name`` less a compression suffix, and the compression that suffix names."""
    root, ext = os.path.splitext(name)
    kind = COMPRESSION_SUFFIXES.get(ext.lower())
    return (root, kind) if kind is not None else (name, None)


@contextmanager
def _opened(name: str) -> Iterator[tuple[IO[bytes], str | None]]:
    """The file's content as a binary stream, decompressed as it is read, and the
    compression found (None for a plain file).

    The compression is told by the first bytes. A name that ends in an oracleGeneral
    suffix (and no compression suffix) is read as it is: a record's first field is a
    free 32-bit time, which could start like gzip data.
    """
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed by the with below; open's own errors apart
    except OSError as exc:
        raise TraceError(name, f"cannot open: {exc.strerror or exc}") from None
    with f:
        plain_name, named = _uncompressed_name(name)
        kind, head = None, b""
        if named is not None or not plain_name.lower().endswith(_BINARY_SUFFIXES):
            try:
                head = f.read(6)
                f.seek(0)
            except OSError as exc:
                raise TraceError(name, f"cannot read: {exc.strerror or exc}") from None
            kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
        if named is not None and kind != named:
            found = "empty" if not head else f"{kind} data" if kind else "not compressed"
            suffix = name[len(plain_name) :]
            raise TraceError(name, f"expected {named} data (by its {suffix} suffix), but the file is {found}")
        if kind is None:
            yield f, None
            return
        corrupt: tuple[type[Exception], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)
        corrupt += _zstd_errors()
        try:
            with _decompressing(kind, f) as stream:
                yield stream, kind
        except corrupt as exc:
            raise TraceError(name, f"corrupt {kind} data: {exc}") from None


def _decompressing(kind: str, f: IO[bytes]) -> IO[bytes]:
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))
    if kind == "bzip2":
        return cast(IO[bytes], bz2.BZ2File(f))
    if kind == "xz":
        return cast(IO[bytes], lzma.LZMAFile(f))
    return cast(IO[bytes], io.BufferedReader(_ZstdFrames(f)))


class _ZstdFrames(io.RawIOBase):
    """zstd frames, one after another, decompressed; input that ends inside a frame is
    an EOFError, as gzip's, bz2's and lzma's readers say. (zstandard's own
    ``stream_reader`` ends quietly there.)"""

    _IN = 16384  # compressed bytes per step: a step's output stays bounded

    def __init__(self, f: IO[bytes]) -> None:
        import zstandard

        self._f = f
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._frame: Any = None
        self._out = b""
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while self._at == len(self._out):
            data = self._f.read(self._IN)
            if not data:
                if self._frame is not None:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return 0
            out = []
            while data:
                if self._frame is None:
                    self._frame = self._new()
                out.append(self._frame.decompress(data))
                data = b""
                if self._frame.eof:
                    data, self._frame = self._frame.unused_data, None
            self._out, self._at = b"".join(out), 0
        n = min(len(b), len(self._out) - self._at)
        b[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n


def _zstd_errors() -> tuple[type[Exception], ...]:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency
        return ()
    return (zstandard.ZstdError,)


def read_trace(path: str | os.PathLike[str], format: str | None = None) -> Trace:
    """Read a whole trace into columns.

    Args:
        path: the trace file.
        format: ``"csv"`` or ``"oracle-general"``; None sniffs it (:func:`sniff_format`).

    Returns:
        The trace, with at least one request.

    Raises:
        TraceError: the file is missing or unreadable, empty, or malformed; the message
            names the file and the line (CSV) or record index (binary).
    """
    name = os.fspath(path)
    if is_special(name):
        raise TraceError(name, "not a regular file (a FIFO or device)")
    fmt = sniff_format(name) if format is None else format
    if fmt not in (CSV, ORACLE_GENERAL):
        raise ValueError(f"unknown trace format {format!r} (expected 'csv' or 'oracle-general')")
    try:
        return _read_csv(name) if fmt == CSV else _read_oracle_general(name)
    except MemoryError:
        pass  # raised below, out of this handler, so that the partial columns are freed first
    raise TraceError(
        name,
        "out of memory while reading it (too many requests for this machine, or a line without end): "
        "replay a part of it",
    )


def _read_oracle_general(name: str) -> Trace:
    with _opened(name) as (f, kind):
        data = _read_whole(name, f, kind)
    if not data:
        raise TraceError(name, "empty file (expected oracleGeneral records of 24 bytes)")
    n, extra = divmod(len(data), RECORD_SIZE)
    if extra:
        raise TraceError(
            name,
            f"truncated record: {extra} of {RECORD_SIZE} bytes at offset {n * RECORD_SIZE} "
            f"(file size {len(data)} is not a multiple of {RECORD_SIZE})",
            record=n,
        )
    # Strided views pick each field out of the packed records in C: word 0 of every six
    # uint32 is the time, word 3 the size; the uint64 id starts at byte 4, so a view
    # shifted by 4 bytes holds it at every third uint64.
    view = memoryview(data)
    words = view.cast("I")
    times_u32: array[int] = array("I")
    times_u32.frombytes(words[0::6].tobytes())
    sizes_u32: array[int] = array("I")
    sizes_u32.frombytes(words[3::6].tobytes())
    keys: array[int] = array("Q")
    keys.frombytes(view[4 : len(data) - 12].cast("Q")[0::3].tobytes())
    if sys.byteorder == "big":  # pragma: no cover - the format is little-endian
        times_u32.byteswap()
        sizes_u32.byteswap()
        keys.byteswap()
    return Trace(array("d", times_u32), keys, array("q", sizes_u32))


def _binary_limit() -> int:
    """The most bytes of binary trace read: a quarter of this machine's memory (the
    columns made of them take as much again)."""
    from edgesim.engine import physical_memory

    memory = physical_memory()
    return int(memory // 4) if memory is not None else 1 << 40


def _read_whole(name: str, f: IO[bytes], kind: str | None) -> bytes | bytearray:
    """All of a binary trace's content (decompressed), at most :func:`_binary_limit`
    bytes."""
    limit = _binary_limit()
    try:
        if kind is None:
            # checked before reading: a file larger than memory would be a MemoryError
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise TraceError(
                    name,
                    f"{size:,} bytes ({size // RECORD_SIZE:,} records) is more than {limit:,}, a "
                    "quarter of this machine's memory; replay a part of it",
                )
            return f.read()
        data = bytearray()
        while chunk := f.read(_READ_CHUNK):
            data += chunk
            if len(data) > limit:
                raise TraceError(
                    name,
                    f"decompresses to more than {limit:,} bytes, a quarter of this machine's "
                    f"memory ({limit // RECORD_SIZE:,} records); replay a part of it",
                )
        return data
    except OSError as exc:
        if kind is not None:
            raise  # the decompressor's: corrupt data (see _opened)
        raise TraceError(name, f"cannot read: {exc.strerror or exc}") from None


def _read_csv(name: str) -> Trace:
    with _opened(name) as (raw, kind):
        f = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            return _parse_csv(name, f)
        except OSError as exc:
            if kind is not None:
                raise  # the decompressor's: corrupt data (see _opened)
            raise TraceError(name, f"cannot read: {exc.strerror or exc}") from None
        finally:
            f.detach()


def _parse_csv(name: str, f: Iterable[str]) -> Trace:
    reader = csv.reader(f)
    try:
        header = next(reader, None)
        if header is None:
            raise TraceError(name, f"empty file (expected a header line {_EXPECTED_HEADER})", line=1)
        fields = tuple(h.strip().lower() for h in header)
        if fields not in (HEADER_BASIC, HEADER_PLACED):
            got = ",".join(header)
            raise TraceError(name, f"bad header {got!r}: expected {_EXPECTED_HEADER}", line=1)
        placed = fields == HEADER_PLACED

        times: array[float] = array("d")
        keys: array[int] = array("Q")
        sizes: array[int] = array("q")
        regions: array[int] = array("q")
        sites: array[int] = array("q")
        ids: dict[str, int] = {}
        rids: dict[str, int] = {}
        sids: dict[str, int] = {}
        t_append, k_append, s_append = times.append, keys.append, sizes.append
        ids_get = ids.get

        row: list[str] = []
        while True:
            # Fast path: parse until something fails, then diagnose that row. A blank
            # line also fails here; it is skipped and parsing resumes.
            try:
                if placed:
                    r_append, x_append = regions.append, sites.append
                    for row in reader:
                        t, k, s, region, site = row
                        time_, size = float(t), int(s)
                        if size < 0 or not k or not region or not site or not math.isfinite(time_):
                            raise ValueError
                        if not (t + s).isascii() or "_" in t or "_" in s:  # as float() and int() take
                            raise ValueError
                        kid = ids_get(k)
                        if kid is None:
                            kid = ids[k] = len(ids)
                        t_append(time_)
                        k_append(kid)
                        s_append(size)
                        r_append(rids.setdefault(region, len(rids)))
                        x_append(sids.setdefault(site, len(sids)))
                else:
                    for row in reader:
                        t, k, s = row
                        time_, size = float(t), int(s)
                        if size < 0 or not k or not math.isfinite(time_):
                            raise ValueError
                        if not (t + s).isascii() or "_" in t or "_" in s:  # as float() and int() take
                            raise ValueError
                        kid = ids_get(k)
                        if kid is None:
                            kid = ids[k] = len(ids)
                        t_append(time_)
                        k_append(kid)
                        s_append(size)
                break
            except UnicodeDecodeError:
                raise  # a ValueError too, but about the bytes, not the row just read
            except (ValueError, TypeError, OverflowError):
                if len(row) > 1 or (row and row[0].strip()):  # not a blank line: a bad row
                    raise _diagnose(name, reader.line_num, row, len(fields)) from None
    except csv.Error as exc:
        raise TraceError(name, f"malformed CSV: {exc}", line=reader.line_num) from None
    except UnicodeDecodeError as exc:
        line = first_non_utf8_line(name)
        if line is None:  # not a file to re-read (tests pass lines)
            raise TraceError(name, f"not UTF-8 text ({exc.reason})") from None
        raise TraceError(name, f"not UTF-8 text ({exc.reason})", line=line) from None
    if not keys:
        raise TraceError(name, "no requests after the header", line=reader.line_num + 1)
    return Trace(
        times,
        keys,
        sizes,
        regions if placed else None,
        sites if placed else None,
        tuple(ids),
        tuple(rids),
        tuple(sids),
    )


def first_non_utf8_line(name: str) -> int | None:
    """The number of the first line of file ``name`` that is not UTF-8, or None
    (decompressed, for a compressed trace)."""
    try:
        with _opened(name) as (f, _):
            for number, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except (OSError, TraceError):
        return None
    return None


def _plain(number: str) -> bool:
    """Digits as a file writes them: not the other scripts' digits, nor the underscores
    between digits that Python's own ``int()`` and ``float()`` take."""
    return number.isascii() and "_" not in number


def _number(text: str, kind: Callable[[str], T]) -> T | None:
    if not _plain(text):
        return None
    try:
        return kind(text)
    except ValueError:
        return None


_LINE_END = re.compile(r"\r\n|\r|\n")


def _diagnose(name: str, line: int, row: list[str], width: int) -> TraceError:
    """What is wrong with one CSV row that the fast path rejected."""

    # A quoted field may hold line ends, so the reader's line is the row's last: name
    # the line the row starts on (where an unclosed quote opened).
    spans = sum(len(_LINE_END.findall(v)) for v in row)
    if row and row[-1].endswith(("\n", "\r")):  # a quote still open at the end of the file
        spans -= 1  # took the row's own line end too
    first = line - spans

    def err(message: str) -> TraceError:
        return TraceError(name, message, line=first)

    if len(row) != width:
        got = f"expected {width} fields ({','.join(HEADER_PLACED[:width])}), got {len(row)}"
        if spans:
            got += f"; a quoted field runs on to line {line} (an unclosed quote?)"
        return err(got)
    t, k, s = row[0], row[1], row[2]
    time_ = _number(t, float)
    if time_ is None:
        return err(f"time {t!r} is not a number")
    if not math.isfinite(time_):
        return err(f"time {t!r} is not a finite number")
    if not k:
        return err("empty key")
    size = _number(s, int)
    if size is None:
        return err(f"size {s!r} is not a whole number of bytes")
    if size < 0:
        return err(f"size {s!r} is negative")
    if size >= 2**63:
        return err(f"size {s!r} is too large (at most {2**63 - 1} bytes)")
    for label, value in zip(("region", "site"), row[3:], strict=False):
        if not value:
            return err(f"empty {label}")
    return err("malformed row")  # pragma: no cover - every fast-path failure is named above


# ---- writing ------------------------------------------------------------------------


def write_trace(path: str | os.PathLike[str], trace: Trace, format: str | None = None) -> None:
    """Write a trace as CSV or oracleGeneral.

    Args:
        path: the output file (replaced).
        trace: the requests.
        format: as for :func:`read_trace`; None picks by extension (CSV unless the name
            ends in ``.oracleGeneral`` or ``.bin``).

    CSV keeps key, region and site names. oracleGeneral has no names: keys are written
    as their numeric ids, regions and sites are dropped, times are truncated to whole
    seconds, and ``next_access_vtime`` is computed.

    Raises:
        TraceError: the file cannot be written, or a value does not fit oracleGeneral
            (time or size outside uint32).
    """
    name = os.fspath(path)
    if format is None:
        format = ORACLE_GENERAL if name.lower().endswith(_BINARY_SUFFIXES) else CSV
    try:
        if format == CSV:
            _write_csv(name, trace)
        elif format == ORACLE_GENERAL:
            _write_oracle_general(name, trace)
        else:
            raise ValueError(f"unknown trace format {format!r} (expected 'csv' or 'oracle-general')")
    except OSError as exc:
        raise TraceError(name, f"cannot write: {exc.strerror or exc}") from None


def _write_csv(name: str, trace: Trace) -> None:
    # The csv module quotes fields holding the delimiter, quote or "\n", but not a bare
    # "\r", which its reader takes as a line end; quote every name then.
    names = (*(trace.key_names or ()), *trace.region_names, *trace.site_names)
    quote_all = any("\r" in n for n in names)
    with open(name, "w", encoding="utf-8", newline="") as f:
        if quote_all:
            out = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        else:
            out = csv.writer(f, lineterminator="\n")
        out.writerow(HEADER_PLACED if trace.has_placement else HEADER_BASIC)
        out.writerows((_format_time(row[0]), *row[1:]) for row in trace.rows())


def _format_time(t: float) -> int | float:
    return int(t) if t.is_integer() else t


def _write_oracle_general(name: str, trace: Trace) -> None:
    n = len(trace)
    # next_access_vtime: 1-based index of the next request for the same key, else -1.
    nxt: array[int] = array("q", [-1]) * n
    seen: dict[int, int] = {}
    keys = trace.keys
    for i in range(n - 1, -1, -1):
        k = keys[i]
        j = seen.get(k)
        if j is not None:
            nxt[i] = j + 1
        seen[k] = i
    times: array[int] = array("I")
    for i, t in enumerate(trace.times):
        if not 0 <= t <= _UINT32_MAX:
            raise TraceError(name, f"time {t} does not fit oracleGeneral's uint32 seconds", record=i)
        times.append(int(t))
    sizes = trace.sizes
    if n and max(sizes) > _UINT32_MAX:
        i = next(i for i, s in enumerate(sizes) if s > _UINT32_MAX)
        raise TraceError(name, f"size {sizes[i]} does not fit oracleGeneral's uint32", record=i)
    # Interleave the columns into packed records with strided writes (see the reader).
    data = bytearray(n * RECORD_SIZE)
    view = memoryview(data)
    words = view.cast("I")
    words[0::6] = memoryview(_le(times))
    words[3::6] = memoryview(_le(array("I", sizes)))
    if n:
        view[4 : len(data) - 12].cast("Q")[0::3] = memoryview(_le(keys))
        view[16:].cast("q")[0::3] = memoryview(_le(nxt))
    with open(name, "wb") as f:
        f.write(data)


def _le(a: array[int]) -> array[int]:
    """``a`` in little-endian byte order (a copy on big-endian hosts)."""
    if sys.byteorder == "big":  # pragma: no cover
        a = array(a.typecode, a)
        a.byteswap()
    return a
