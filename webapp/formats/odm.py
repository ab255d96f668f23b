"""Streaming, hardened reader of CDISC ODM 1.3 `ClinicalData` (and the ItemDefs of a file).

    reader = OdmReader(path_or_binary_file)
    for part in reader:
        if isinstance(part, ClinicalData):     # a ClinicalData element starts
            part.study_oid, part.metadata_version_oid, part.item_defs
        else:                                  # a list of value rows of that ClinicalData
            for subject, event, event_repeat, form, group, group_repeat, item, value in part: ...
    reader.subjects, reader.study_events, reader.values, reader.bytes_read, reader.item_defs

How it is fast: lxml's parser-target interface. libxml2 parses and calls `start(tag, attrib)`
once per element; no tree is built, so nothing needs clearing and memory stays flat however
large the file (the chunk being parsed plus one batch of rows). Only start tags reach Python
(no end or text callbacks), the keys above the item are read once per element that carries
them, OIDs and repeat keys are interned (a batch holds one string object per distinct OID),
and a value is one tuple appended to a list. On a 50 MB file this read 62 MB/s where
`iterparse` with a subtree walk per subject (the fastest iterparse loop we tried) read 44 and
a plain iterparse loop over start and end events 34; bench/formats.py prints the figures.

Why batches and not one tuple at a time: a generator step per value costs about as much as
parsing it. Batches hold about `batch_size` rows, cut wherever a parsed chunk ends: a subject
may span two batches, a batch never spans two ClinicalData elements.

Keys are never None: an absent StudyEventRepeatKey or ItemGroupRepeatKey reads as "1", so a
database key over the seven keys stays unique (NULLs never compare equal). `value` is None
for an ItemData without a Value (IsNull="Yes").

Hardening: a file with a DOCTYPE is refused before its internal subset is read, so no entity
is ever declared: entity expansion (billion laughs) and external entities (file://, http://)
cannot happen. Behind that, the parser loads no DTD, resolves no external entity, uses no
network and keeps libxml2's size limits (no huge_tree); it decodes only XML's five predefined
entities and character references (`&amp;`, `&#10;`), as any XML reader must. Every refusal is
an OdmError with the line and column when the parser knows them.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Union

from lxml import etree

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
# ClinicalData is the same in ODM 1.2; some producers write no namespace at all.
ACCEPTED_NAMESPACES = (ODM_NS, "http://www.cdisc.org/ns/odm/v1.2", "")

BATCH_SIZE = 20_000
CHUNK_SIZE = 1 << 16

Row = tuple  # (subject_key, study_event_oid, event_repeat_key, form_oid, item_group_oid,
#               item_group_repeat_key, item_oid, value)


class OdmError(Exception):
    """A file that cannot be read as ODM ClinicalData; line and column when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        where = f"line {self.line}" if self.column is None else (
            f"line {self.line}, column {self.column}")
        return f"{self.message} ({where})"


@dataclass(frozen=True, slots=True)
class ItemDef:
    oid: str
    name: str | None
    data_type: str | None
    length: int | None


@dataclass(frozen=True, slots=True)
class ClinicalData:
    """A ClinicalData element starts; the batches that follow belong to it."""

    study_oid: str
    metadata_version_oid: str | None
    # The ItemDefs of the file's Study/MetaDataVersion with these OIDs ({} when it has none).
    item_defs: dict[str, ItemDef] = field(default_factory=dict)


Source = Union[str, os.PathLike, BinaryIO]

# The attribute a KeyError names -> the element that lacks it, for the message.
_REQUIRED = {
    "SubjectKey": "SubjectData", "StudyEventOID": "StudyEventData", "FormOID": "FormData",
    "ItemGroupOID": "ItemGroupData", "ItemOID": "ItemData", "StudyOID": "ClinicalData",
    "OID": "Study, MetaDataVersion or ItemDef",
}
_ENCODING = {etree.ErrorTypes.ERR_INVALID_ENCODING, etree.ErrorTypes.ERR_UNKNOWN_ENCODING,
             etree.ErrorTypes.ERR_UNSUPPORTED_ENCODING}
# What may come before the root element (XML declaration, comments); ODM files have a line.
MAX_PROLOG = 1 << 20


def _hardened_parser(target) -> etree.XMLParser:
    return etree.XMLParser(
        target=target, resolve_entities="internal", no_network=True, load_dtd=False,
        dtd_validation=False, huge_tree=False, remove_comments=True, remove_pis=True)


class OdmReader:
    """One pass over one ODM file: iterate it once (see the module's docstring).

    `max_lengths` (item OID -> most characters) may be set at any time, typically when the
    ClinicalData is seen and its domain's item definitions are known: every batch yielded
    after that is checked, and a longer value raises OdmError naming where it is.
    """

    def __init__(self, source: Source, *, batch_size: int = BATCH_SIZE,
                 chunk_size: int = CHUNK_SIZE):
        self.source = source
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.max_lengths: dict[str, int] | None = None
        self.item_defs: dict[tuple[str, str], dict[str, ItemDef]] = {}
        self.subjects = 0
        self.study_events = 0
        self.values = 0
        self.bytes_read = 0
        self._used = False

    def __iter__(self) -> Iterator[ClinicalData | list[Row]]:
        if self._used:
            raise RuntimeError("an OdmReader reads its file once")
        self._used = True
        if isinstance(self.source, (str, os.PathLike)):
            with open(self.source, "rb") as file:
                yield from self._read(file)
        else:
            yield from self._read(self.source)

    def _read(self, file: BinaryIO) -> Iterator[ClinicalData | list[Row]]:
        head, namespace = self._sniff_root(file)
        state = _ParseState(self, namespace)
        parser = _hardened_parser(state)
        ready = state.ready
        read, feed = file.read, parser.feed
        chunks = itertools.chain(head, iter(lambda: read(self.chunk_size), b""))
        for chunk in chunks:
            try:
                feed(chunk)
            except etree.XMLSyntaxError as error:
                raise _syntax_error(error) from None
            except KeyError as error:
                raise state.missing_attribute(error) from None
            self.bytes_read += len(chunk)
            state.cut_batch(self.batch_size)
            if ready:
                yield from self._hand_over(ready)
        try:
            parser.close()
        except etree.XMLSyntaxError as error:
            raise _syntax_error(error, at_end=True) from None
        if not state.seen_clinical_data:
            raise OdmError("the root element is ODM but it has no ClinicalData: nothing to import")
        state.cut_batch(1)
        yield from self._hand_over(ready)

    def _sniff_root(self, file: BinaryIO) -> tuple[list[bytes], str]:
        """Parse up to the root's start tag: refuse a DOCTYPE, or a root that is not ODM.

        Returns the chunks read so far (the main parser reads them again) and the namespace.
        """
        probe = _RootProbe()
        parser = _hardened_parser(probe)
        head: list[bytes] = []
        while probe.tag is None:
            chunk = file.read(self.chunk_size)
            if not chunk:
                if not head:
                    raise OdmError("the file is empty (0 bytes)")
                try:
                    parser.close()
                except etree.XMLSyntaxError as error:
                    raise _syntax_error(error, at_end=True) from None
                raise OdmError("the file has no root element")
            head.append(chunk)
            if sum(map(len, head)) > MAX_PROLOG + self.chunk_size:
                raise OdmError(f"no root element in the first {MAX_PROLOG >> 20} MB of the file")
            try:
                parser.feed(chunk)
            except etree.XMLSyntaxError as error:
                raise _syntax_error(error) from None
            except _RootSeen:
                pass
            except OdmError as error:
                raise OdmError(error.message, *_line_of(b"<!DOCTYPE", b"".join(head))) from None
        tag = probe.tag
        namespace, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
        if local != "ODM":
            raise OdmError(f"not an ODM file: its root element is {_describe(tag)}, not ODM")
        if namespace not in ACCEPTED_NAMESPACES:
            raise OdmError(f"the root element is ODM in namespace {namespace!r}, which is not "
                           f"ODM 1.3 ({ODM_NS})")
        return head, namespace

    def _hand_over(self, ready: list) -> Iterator[ClinicalData | list[Row]]:
        parts = ready[:]
        ready.clear()
        for part in parts:
            if type(part) is list:
                self.values += len(part)
                if self.max_lengths:
                    check_lengths(part, self.max_lengths)
            yield part


class _RootSeen(Exception):
    pass


class _RootProbe:
    """A parser target that stops at the first start tag, the root, and keeps its name."""

    tag: str | None = None

    def start(self, tag, attrib):
        self.tag = tag
        raise _RootSeen

    def doctype(self, name, public_id, system_url):
        raise OdmError(_DOCTYPE_REFUSED)

    def close(self):
        return None


_DOCTYPE_REFUSED = ("the file has a DOCTYPE declaration; ODM files need none, and one can "
                    "declare entities (entity expansion, external files or URLs), so it is "
                    "refused")


class _ParseState:
    """The parser target: its `start` runs once per element, so it is kept lean."""

    def __init__(self, reader: OdmReader, namespace: str):
        self.reader = reader
        self.ready: list = []   # parts waiting to be yielded, in document order
        self.batch: list = []
        self.seen_clinical_data = False
        # A closure over the tag names and the current keys: cell variables are the fastest
        # reads Python has, and lxml looks `start` up once, when the parser is made.
        self.start = self._make_start("{%s}" % namespace if namespace else "")

    def doctype(self, name, public_id, system_url) -> None:
        raise OdmError(_DOCTYPE_REFUSED)

    def close(self) -> None:
        return None

    def cut_batch(self, size: int) -> None:
        if len(self.batch) >= size:
            self.ready.append(self.batch)
            self.batch = []
            self.start.rebind(self.batch)

    def missing_attribute(self, error: KeyError) -> OdmError:
        key = error.args[0] if error.args else "?"
        element = _REQUIRED.get(key)
        if element is None:
            return OdmError(f"unexpected error while reading: KeyError {key!r}")
        return OdmError(f"{element} without its {key} attribute{self.context()}")

    def context(self) -> str:
        names = ("subject", "study event", "repeat", "form", "item group", "repeat")
        parts = [f"{n} {v}" for n, v in zip(names, self.where()) if v is not None]
        return f" (in {', '.join(parts)})" if parts else ""

    def _make_start(self, ns: str):
        intern = sys.intern
        state = self
        reader = self.reader
        ITEM, GROUP, FORM, EVENT, SUBJECT = (ns + t for t in (
            "ItemData", "ItemGroupData", "FormData", "StudyEventData", "SubjectData"))
        CLINICAL, STUDY, MDV, ITEMDEF, REFERENCE = (ns + t for t in (
            "ClinicalData", "Study", "MetaDataVersion", "ItemDef", "ReferenceData"))
        TYPED_ITEM = ns + "ItemData"  # ItemDataString, ItemDataInteger, … (ODM 1.3 ItemDataAny)
        subject = event = event_repeat = form = group = group_repeat = None
        study = mdv = None
        batch_append = self.batch.append

        def outside_group(attrib):
            raise OdmError(f"ItemData outside an ItemGroupData{state.context()}")

        def ignore(row):
            pass

        append = ignore

        def start(tag, attrib):
            nonlocal subject, event, event_repeat, form, group, group_repeat, append
            if tag == ITEM:
                append((subject, event, event_repeat, form, group, group_repeat,
                        intern(attrib["ItemOID"]), attrib.get("Value")))
            elif tag == GROUP:
                group = intern(attrib["ItemGroupOID"])
                group_repeat = intern(attrib.get("ItemGroupRepeatKey") or "1")
                if subject is not None:
                    append = batch_append
            elif tag == FORM:
                form = intern(attrib["FormOID"])
                repeat = attrib.get("FormRepeatKey")
                group = group_repeat = None
                if repeat not in (None, "1"):
                    raise OdmError(f"FormRepeatKey {repeat!r}: repeating forms are not "
                                   f"supported (one value per event, form, group and item)"
                                   f"{state.context()}")
                append = outside_group
            elif tag == EVENT:
                event = intern(attrib["StudyEventOID"])
                event_repeat = intern(attrib.get("StudyEventRepeatKey") or "1")
                form = group = group_repeat = None
                reader.study_events += 1
                append = outside_group
            elif tag == SUBJECT:
                subject = attrib["SubjectKey"]
                event = event_repeat = form = group = group_repeat = None
                reader.subjects += 1
                append = outside_group
            else:
                other(tag, attrib)

        def other(tag, attrib):
            nonlocal subject, event, event_repeat, form, group, group_repeat, append, study, mdv
            if tag == ITEMDEF:
                length = attrib.get("Length")
                defs = reader.item_defs.setdefault((study, mdv), {})
                defs[attrib["OID"]] = ItemDef(
                    attrib["OID"], attrib.get("Name"), attrib.get("DataType"),
                    int(length) if length and length.isdigit() else None)
            elif tag == CLINICAL:
                study_oid = attrib["StudyOID"]
                mdv_oid = attrib.get("MetaDataVersionOID")
                state.seen_clinical_data = True
                state.cut_batch(1)
                state.ready.append(ClinicalData(
                    study_oid, mdv_oid, reader.item_defs.get((study_oid, mdv_oid), {})))
                subject = event = event_repeat = form = group = group_repeat = None
                append = outside_group
            elif tag == REFERENCE:
                # ReferenceData holds ItemGroupData/ItemData too, but of no subject: skipped.
                subject = None
                append = ignore
            elif tag == STUDY:
                study = attrib["OID"]
            elif tag == MDV:
                mdv = attrib["OID"]
            elif tag.startswith(TYPED_ITEM):
                raise OdmError(f"{tag.rpartition('}')[2]} (a typed ItemData) is not supported: "
                               f"values are read from ItemData's Value attribute"
                               f"{state.context()}")

        def rebind(new_batch):
            nonlocal batch_append, append
            was_collecting = append is batch_append
            batch_append = new_batch.append
            if was_collecting:
                append = batch_append

        def where():
            return subject, event, event_repeat, form, group, group_repeat

        start.rebind = rebind
        self.where = where
        return start


def check_lengths(rows: list[Row], max_lengths: dict[str, int]) -> None:
    get = max_lengths.get
    for row in rows:
        value = row[7]
        if value is not None:
            limit = get(row[6])
            if limit is not None and len(value) > limit:
                raise OdmError(
                    f"value of {row[6]} is {len(value)} characters long, more than its "
                    f"{limit} (subject {row[0]}, study event {row[1]}, repeat {row[2]}, "
                    f"form {row[3]}, item group {row[4]}, repeat {row[5]})")


def _line_of(needle: bytes, data: bytes) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the first `needle` in `data` (UTF-8), or (None, None)."""
    at = data.find(needle)
    if at < 0:
        return None, None
    line_start = data.rfind(b"\n", 0, at) + 1
    return data.count(b"\n", 0, at) + 1, at - line_start + 1


def _describe(tag: str) -> str:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return f"{local} (namespace {ns})"
    return tag


def _syntax_error(error: etree.XMLSyntaxError, at_end: bool = False) -> OdmError:
    """An OdmError in plain words; `at_end`: the parser wanted more when the file ended."""
    line, column = error.position if error.position else (None, None)
    detail = error.msg or str(error)
    # lxml appends ", line L, column C" to the message; OdmError says it once.
    detail = detail.split(f", line {line}, column")[0] if line is not None else detail
    code = error.code
    if at_end or "Premature end of data" in detail:
        message = f"the file ends before its XML does (truncated?): {detail}"
    elif code in _ENCODING or "encoding" in detail.lower() or "UTF-8" in detail:
        message = (f"the file is not valid UTF-8, or not in the encoding it declares: "
                   f"{detail}")
    elif "Entity" in detail or "entity" in detail:
        message = f"entities are not allowed in ODM files: {detail}"
    else:
        message = f"not well-formed XML: {detail}"
    return OdmError(message, line or None, column if line else None)


def read_values(source: Source, **options) -> Iterator[Row]:
    """Every value row of every ClinicalData of `source`, one at a time (tests, small files)."""
    for part in OdmReader(source, **options):
        if type(part) is list:
            yield from part
