"""An ODM file parsed in a child process, so that parsing overlaps the importer's mapping and
writing (issue 9: the parser holds the GIL, so a thread could not do it).

    with ParsedFile(path) as parsed:           # opens the file here, then forks the parser
        for part in parsed:
            if isinstance(part, ClinicalData): ...  # as odm.OdmReader yields it
            else: part is a Batch: its values as columns of indexes (below)
        parsed.subjects, parsed.study_events, parsed.values, parsed.bytes_read

Why a fork: the child has lxml and this code already imported and needs nothing sent over; a
fork, parse and exit of a tiny file took 10-25 ms from a 95 MB process on a loaded machine, where
starting an interpreter that imports the reader took 280 ms. The child only parses: it opens no connection and uses none it inherited, and
leaves with os._exit, so nothing of the parent's (the transaction, Redis) is touched or closed.

Why columns of indexes: a batch crosses the pipe as one `marshal` string (several times cheaper
than pickle) of a few flat lists. The keys above the item (subject, event and repeat, form,
group and repeat: a "head") are sent once per batch as distinct tuples and each value names its
head by index; item OIDs are sent once per ClinicalData. So the importer maps each head and item
once and makes the value keys with `map` over lists, without a Python step per value.

Memory stays flat: the pipe holds at most PIPE_BYTES and the child blocks on a full pipe, so at
most one batch waits in each process besides the pipe's. Head tables are the batch's own.

The child dies with the parent: PR_SET_PDEATHSIG (Linux) kills it when the parent dies, and
anywhere else the write to a pipe with no reader fails and ends it. Its errors come back as
the same exceptions: OdmError with its message, line and column; anything else pickled.
"""
from __future__ import annotations

import ctypes
import fcntl
import gc
import marshal
import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass
from operator import itemgetter

from webapp.formats.odm import BATCH_SIZE, ClinicalData, ItemDef, OdmError, OdmReader, check_lengths

PIPE_BYTES = 1 << 20  # what the pipe may hold (Linux F_SETPIPE_SZ); the child waits beyond that
_HEADER = struct.Struct("<I")
_HEAD = itemgetter(0, 1, 2, 3, 4, 5)
_ITEM = itemgetter(6)
_VALUE = itemgetter(7)


@dataclass(slots=True)
class Batch:
    """About `batch_size` values of one ClinicalData, as columns: value n is
    heads[head_of[n]] + (items[item_of[n]], values[n])."""

    heads: list[tuple]  # this batch's distinct (subject, event, event repeat, form, group, group repeat)
    items: list[str]  # the item OIDs of the ClinicalData so far (the same list, growing)
    head_of: list[int]
    item_of: list[int]
    values: list[str | None]

    def __len__(self) -> int:
        return len(self.values)

    def rows(self) -> list[tuple]:
        """The values as odm.OdmReader's row tuples (tests, error messages)."""
        heads, items = self.heads, self.items
        return [(*heads[h], items[i], value) for h, i, value in zip(self.head_of, self.item_of, self.values)]


class ParseProcessError(RuntimeError):
    """The parsing process ended without saying why (killed, out of memory)."""


class ParsedFile:
    """One ODM file, read by OdmReader in a child process; iterate it once, inside `with`."""

    def __init__(self, path, *, batch_size: int = BATCH_SIZE):
        self.path = path
        self.batch_size = batch_size
        self.max_lengths: dict[str, int] | None = None  # as OdmReader.max_lengths
        self.subjects = self.study_events = self.values = self.bytes_read = 0
        self.pid = None
        self._input = None
        self._items: list[str] = []

    def __enter__(self) -> ParsedFile:
        with open(self.path, "rb") as file:  # a missing file is the caller's FileNotFoundError
            read_end, write_end = os.pipe()
            parent = os.getpid()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                raise
            if pid == 0:
                _child(file, read_end, write_end, parent, self.batch_size)  # never returns
        self.pid = pid
        os.close(write_end)
        self._input = open(read_end, "rb", buffering=PIPE_BYTES)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """End the child (if it still runs) and reap it: no orphan, no zombie."""
        if self._input is not None:
            self._input.close()  # a child still writing gets EPIPE
            self._input = None
        if self.pid is not None:
            pid, self.pid = self.pid, None
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)

    def __iter__(self):
        while True:
            message = self._receive()
            kind = message[0]
            if kind == "rows":
                yield self._batch(*message[1:])
            elif kind == "start":
                self._items = []
                study_oid, mdv_oid, defs = message[1:]
                yield ClinicalData(study_oid, mdv_oid, {oid: ItemDef(oid, *rest) for oid, *rest in defs})
            elif kind == "end":
                self.subjects, self.study_events, self.values, self.bytes_read = message[1:]
                return
            elif kind == "odm":
                raise OdmError(*message[1:])
            else:  # "error": whatever else the reader raised
                raise pickle.loads(message[1])

    def _receive(self) -> tuple:
        header = self._input.read(_HEADER.size)
        size = _HEADER.unpack(header)[0] if len(header) == _HEADER.size else -1
        data = self._input.read(size) if size > 0 else b""
        if len(data) != size:
            raise ParseProcessError(f"the process parsing the file ended unexpectedly ({self._exit_status()})")
        return marshal.loads(data)

    def _exit_status(self) -> str:
        pid, status = os.waitpid(self.pid, 0)
        self.pid = None
        code = os.waitstatus_to_exitcode(status)
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def _batch(self, new_items, heads, head_of, item_of, values, longest) -> Batch:
        self._items.extend(new_items)
        batch = Batch(heads, self._items, head_of, item_of, values)
        if self.max_lengths:
            limits = self.max_lengths
            if any(length > limits.get(self._items[item], length) for item, length in longest.items()):
                check_lengths(batch.rows(), limits)  # raises OdmError naming the value and where
        return batch


# --- the child ----------------------------------------------------------------------------------

def _child(file, read_end, write_end, parent, batch_size) -> None:
    """Parse and send, then leave with os._exit: no atexit, no finalizer of the parent's objects."""
    code = 1
    try:
        os.close(read_end)
        _die_with(parent)
        for sig in (signal.SIGTERM, signal.SIGINT):  # not the work horse's handlers
            signal.signal(sig, signal.SIG_DFL)
        gc.freeze()  # the parent's objects are never scanned, so their pages stay shared
        try:
            fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        except OSError:
            pass  # the default pipe size: slower only
        with open(write_end, "wb") as out:
            _send_parts(out, OdmReader(file, batch_size=batch_size))
        code = 0
    except BaseException:  # noqa: BLE001 - a broken pipe (the parent gone) or an error that could not be sent
        pass
    finally:
        os._exit(code)


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _send_parts(out, reader: OdmReader) -> None:
    def send(message):
        data = marshal.dumps(message)
        out.write(_HEADER.pack(len(data)))
        out.write(data)

    try:
        items = _Index()
        for part in reader:
            if isinstance(part, ClinicalData):
                items = _Index()
                send(("start", part.study_oid, part.metadata_version_oid,
                      [(d.oid, d.name, d.data_type, d.length) for d in part.item_defs.values()]))
            else:
                send(("rows", *_columns(part, items)))
    except OdmError as error:
        send(("odm", error.message, error.line, error.column))
        return
    except Exception as error:  # noqa: BLE001 - sent to the parent, which raises it
        send(("error", _pickled(error)))
        return
    send(("end", reader.subjects, reader.study_events, reader.values, reader.bytes_read))


class _Index(dict):
    """key -> its number in order of first appearance; `list(index)` lists the keys in that order."""

    __slots__ = ("sent",)

    def __missing__(self, key):
        self[key] = number = len(self)
        return number

    def new_keys(self) -> list:
        keys = list(self)
        start, self.sent = getattr(self, "sent", 0), len(keys)
        return keys[start:]


def _columns(rows: list[tuple], items: _Index) -> tuple:
    """A batch of OdmReader rows as (new item OIDs, heads, head_of, item_of, values, longest):
    the loops are `map`s over C functions, but for the first sight of each head and item."""
    heads = _Index()
    head_of = list(map(heads.__getitem__, map(_HEAD, rows)))
    item_of = list(map(items.__getitem__, map(_ITEM, rows)))
    values = list(map(_VALUE, rows))
    longest = {}  # item index -> its longest value in the batch, for the parent's length check
    for item, value in zip(item_of, values):
        if value is not None and len(value) > longest.get(item, 0):
            longest[item] = len(value)
    return items.new_keys(), list(heads), head_of, item_of, values, longest


def _pickled(error: BaseException) -> bytes:
    try:
        data = pickle.dumps(error)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - an exception that does not survive pickling
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
