"""Streaming writers of clinical values: CSV, tab-separated text, JSON and ODM 1.3 XML.

Every writer takes a binary file object and an *iterator* of value rows, the tuples that
`odm.OdmReader` yields:

    (subject_key, study_event_oid, event_repeat_key, form_oid, item_group_oid,
     item_group_repeat_key, item_oid, value)

and writes as it reads them, so memory stays flat whatever the number of values (at most one
study event's values are held, to pivot them). `write(format, out, values, ...)` picks the
writer by its key in MEDIA_TYPES.

Order expected from the caller (an ORDER BY over the keys does it):
- CSV, TSV, JSON: the values of one subject, event and event repeat come together;
- ODM: sorted by subject, event, repeat, form, item group, repeat (each level together).

CSV and TSV ("wide"): a header, then one row per subject, study event and event repeat with a
column per item (`Column`: an item in its form and item group; the header shows the item OID,
or FORM.GROUP.ITEM when an item OID is in two places). When an item group repeats within an
event, its repeats go to rows of their own: the fourth key column, ItemGroupRepeatKey, tells
them apart (it is "1" for non-repeating groups). An absent or null value is an empty cell.

Formula injection: a cell (header included) that begins with `=`, `+`, `-`, `@`, a tab or a
carriage return is written with a leading apostrophe (`'=1+1`), which spreadsheet programs
show as text instead of evaluating. Plain numbers (`-12`, `+3.5`, `-1e-3`) are left alone:
they are no formula, and negative values are common in clinical data.

JSON: one JSON document, a streamed array with one object per line, one object per CSV row:
`{"SubjectKey": …, "StudyEventOID": …, "StudyEventRepeatKey": …, "ItemGroupRepeatKey": …,
"items": {"<column header>": value or null, …}}`. An array (not JSON Lines) because the file is
served as application/json and every JSON tool reads it; the item values are nested so that an
item OID can never collide with a key column's name.

ODM: ODM 1.3.2 `ClinicalData` with SubjectData/StudyEventData/FormData/ItemGroupData/ItemData,
preceded by Study/MetaDataVersion/ItemDef when item definitions are given. It is written as
escaped text rather than through lxml.etree.xmlfile: one element object per value made the
writer ten times slower (2.2 s against 0.23 s for a million values). Attribute values escape
`& < > "` and tab, newline and carriage return (as character references, so they read back
unchanged); a character XML 1.0 cannot carry (control characters, lone surrogates) raises
ExportError naming the value. `odm.OdmReader` reads the file back to the same rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Callable, Iterable, Iterator

from webapp.formats.odm import ODM_NS, ItemDef

KEY_COLUMNS = ("SubjectKey", "StudyEventOID", "StudyEventRepeatKey", "ItemGroupRepeatKey")


class ExportError(ValueError):
    """Values that cannot be written in the asked format; the message says which and why."""


@dataclass(frozen=True)
class Column:
    """One item column of a wide file: an item in its form and item group."""

    form_oid: str
    item_group_oid: str
    item_oid: str
    header: str


def columns_for(items: Iterable[tuple[str, str, str]]) -> list[Column]:
    """Columns for (form OID, item group OID, item OID) triples, in the order given.

    The header is the item OID, or FORM.GROUP.ITEM where the item OID is in two places.
    """
    keys = list(dict.fromkeys(items))
    seen = Counter(item for _, _, item in keys)
    return [Column(form, group, item, item if seen[item] == 1 else f"{form}.{group}.{item}")
            for form, group, item in keys]


# --- wide rows (CSV, TSV, JSON) --------------------------------------------------------------

def wide_rows(values: Iterable[tuple], columns: list[Column]) -> Iterator[tuple[tuple, list]]:
    """(subject, event, event repeat, item group repeat) and its cells, per output row."""
    index = {(c.form_oid, c.item_group_oid, c.item_oid): n for n, c in enumerate(columns)}
    width = len(columns)
    current = None
    repeats: dict[str, list] = {}
    for subject, event, event_repeat, form, group, group_repeat, item, value in values:
        key = (subject, event, event_repeat)
        if key != current:
            if current is not None:
                for group_key, cells in repeats.items():
                    yield (*current, group_key), cells
            current = key
            repeats = {}
        cells = repeats.get(group_repeat)
        if cells is None:
            cells = repeats[group_repeat] = [None] * width
        try:
            cells[index[form, group, item]] = value
        except KeyError:
            raise ExportError(f"item {item} of form {form}, item group {group} (subject "
                              f"{subject}) is not one of the export's columns") from None
    if current is not None:
        for group_key, cells in repeats.items():
            yield (*current, group_key), cells


_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?").fullmatch
_FORMULA_START = frozenset("=+-@\t\r")


def neutralise(cell: str | None) -> str:
    """A cell as a spreadsheet may show it: formulas prefixed with an apostrophe."""
    if not cell:
        return ""
    if cell[0] in _FORMULA_START and not (cell[0] in "+-" and _PLAIN_NUMBER(cell)):
        return "'" + cell
    return cell


def write_csv(out: BinaryIO, values: Iterable[tuple], columns: list[Column], *,
              delimiter: str = ",") -> int:
    """Header and wide rows as CSV (UTF-8, CRLF, quoted where needed); returns the rows."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        writer = csv.writer(text, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow([neutralise(h) for h in (*KEY_COLUMNS, *(c.header for c in columns))])
        rows = 0
        for keys, cells in wide_rows(values, columns):
            writer.writerow([neutralise(cell) for cell in (*keys, *cells)])
            rows += 1
        text.flush()
    finally:
        text.detach()  # the caller's file stays open
    return rows


def write_tsv(out: BinaryIO, values: Iterable[tuple], columns: list[Column]) -> int:
    """As write_csv, with tabs between cells (a tab or newline in a value is quoted)."""
    return write_csv(out, values, columns, delimiter="\t")


def write_json(out: BinaryIO, values: Iterable[tuple], columns: list[Column]) -> int:
    """A JSON array, one object per wide row and per line; returns the rows."""
    headers = [c.header for c in columns]
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    write = out.write
    write(b"[")
    rows = 0
    for (subject, event, event_repeat, group_repeat), cells in wide_rows(values, columns):
        row = {"SubjectKey": subject, "StudyEventOID": event,
               "StudyEventRepeatKey": event_repeat, "ItemGroupRepeatKey": group_repeat,
               "items": dict(zip(headers, cells))}
        write((",\n" if rows else "\n").encode() + dumps(row).encode())
        rows += 1
    write(b"\n]\n" if rows else b"]\n")
    return rows


# --- ODM XML ---------------------------------------------------------------------------------

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
            "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
_NEEDS_ESCAPE = re.compile('[&<>"\t\n\r]').search
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]").search
_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]').search
_ESCAPE_ONE = re.compile('[&<>"\t\n\r]')


def attr(value: str) -> str:
    """`value` quoted as an XML attribute value, or ExportError if XML cannot carry it."""
    if _SPECIAL(value) is None:
        return f'"{value}"'
    bad = _NOT_XML(value)
    if bad:
        raise ExportError(f"it has the character U+{ord(bad.group()):04X}, which XML 1.0 "
                          f"cannot carry")
    return '"' + _ESCAPE_ONE.sub(lambda m: _ESCAPES[m.group()], value) + '"'


def _repeat(name: str, key: str | None) -> str:
    # No repeat key (None or ""): the attribute is left out, and reads back as "1".
    return f" {name}={attr(key)}" if key else ""


def write_odm(out: BinaryIO, values: Iterable[tuple], *, study_oid: str,
              metadata_version_oid: str | None = None, item_defs: Iterable[ItemDef] = (),
              study_name: str | None = None, file_oid: str | None = None,
              created: datetime | None = None) -> int:
    """An ODM 1.3.2 file of one ClinicalData for `study_oid`; returns the values written."""
    created = created or datetime.now(timezone.utc)
    file_oid = file_oid or f"{study_oid}.{created:%Y%m%d%H%M%S}"
    write = out.write
    write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    write((f'<ODM xmlns="{ODM_NS}" ODMVersion="1.3.2" FileType="Snapshot" '
           f'FileOID={attr(file_oid)} CreationDateTime="{created.isoformat()}">\n').encode())
    item_defs = list(item_defs)
    if item_defs:
        write(_study_xml(study_oid, metadata_version_oid or "MDV.1", item_defs,
                         study_name or study_oid).encode())
        metadata_version_oid = metadata_version_oid or "MDV.1"
    mdv = f" MetaDataVersionOID={attr(metadata_version_oid)}" if metadata_version_oid else ""
    write(f"<ClinicalData StudyOID={attr(study_oid)}{mdv}>\n".encode())
    count = _write_clinical_values(write, values)
    write(b"</ClinicalData>\n</ODM>\n")
    return count


def _write_clinical_values(write: Callable[[bytes], object], values: Iterable[tuple]) -> int:
    # The open elements are closed from the innermost level up to the first key that changed,
    # then opened again from there; the text of one subject is written at once.
    parts: list[str] = []
    previous: tuple | None = None
    count = 0
    for row in values:
        try:
            if row[:6] != previous:
                _open_elements(parts, row, previous, write)
                previous = row[:6]
            item, value = row[6], row[7]
            if value is None:
                parts.append(f'    <ItemData ItemOID={attr(item)} IsNull="Yes"/>\n')
            else:
                parts.append(f"    <ItemData ItemOID={attr(item)} Value={attr(value)}/>\n")
        except (ExportError, TypeError) as error:
            raise ExportError(f"cannot write item {row[6]} of subject {row[0]} (study event "
                              f"{row[1]}, form {row[3]}, item group {row[4]}): "
                              f"{_reason(error)}") from None
        count += 1
    if previous is not None:
        parts.extend(reversed(_CLOSING))
    write("".join(parts).encode())
    return count


_CLOSING = ("</SubjectData>\n", " </StudyEventData>\n", "  </FormData>\n",
            "   </ItemGroupData>\n")


def _open_elements(parts: list[str], row: tuple, previous: tuple | None, write) -> None:
    """Close what the new row leaves, open what it enters; a finished subject is written."""
    subject, event, event_repeat, form, group, group_repeat = row[:6]
    level = 0 if previous is None else _first_change(row, previous)
    if previous is not None:
        parts.extend(reversed(_CLOSING[level:]))
        if level == 0:
            write("".join(parts).encode())
            parts.clear()
    if level == 0:
        parts.append(f"<SubjectData SubjectKey={attr(subject)}>\n")
    if level <= 1:
        parts.append(f" <StudyEventData StudyEventOID={attr(event)}"
                     f"{_repeat('StudyEventRepeatKey', event_repeat)}>\n")
    if level <= 2:
        parts.append(f"  <FormData FormOID={attr(form)}>\n")
    parts.append(f"   <ItemGroupData ItemGroupOID={attr(group)}"
                 f"{_repeat('ItemGroupRepeatKey', group_repeat)}>\n")


def _reason(error: Exception) -> str:
    if isinstance(error, TypeError):
        return "a key is missing (None) or not text"
    return str(error)


def _first_change(row: tuple, previous: tuple) -> int:
    """The element level (0 subject … 3 item group) of the first key that differs."""
    if row[0] != previous[0]:
        return 0
    if row[1] != previous[1] or row[2] != previous[2]:
        return 1
    if row[3] != previous[3]:
        return 2
    return 3


def _study_xml(study_oid: str, mdv_oid: str, item_defs: list[ItemDef], name: str) -> str:
    lines = [f"<Study OID={attr(study_oid)}>\n <GlobalVariables>"
             f"<StudyName>{_text(name)}</StudyName><StudyDescription>{_text(name)}"
             f"</StudyDescription><ProtocolName>{_text(name)}</ProtocolName>"
             f"</GlobalVariables>\n <MetaDataVersion OID={attr(mdv_oid)} "
             f"Name={attr(mdv_oid)}>\n"]
    for item in item_defs:
        extra = "".join(f" {key}={attr(str(v))}" for key, v in (
            ("Name", item.name or item.oid), ("DataType", item.data_type or "text"),
            ("Length", item.length)) if v is not None)
        lines.append(f"  <ItemDef OID={attr(item.oid)}{extra}/>\n")
    lines.append(" </MetaDataVersion>\n</Study>\n")
    return "".join(lines)


def _text(value: str) -> str:
    return attr(value)[1:-1]


# --- choosing a format, and the file's checksum ----------------------------------------------
# The formats' keys, labels and file extensions are the model's (ExportFormat, FORMAT_LABELS,
# FORMAT_EXTENSIONS in webapp/models/clinical.py); a file's media type is the writers' business.

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "json": "application/json",
    "odm": "application/xml",
}


def write(fmt: str, out: BinaryIO, values: Iterable[tuple], *, columns: list[Column],
          study_oid: str, **odm_options) -> int:
    """Write `values` in format `fmt` (a key of MEDIA_TYPES); returns rows (wide) or values (ODM)."""
    if fmt == "csv":
        return write_csv(out, values, columns)
    if fmt == "tsv":
        return write_tsv(out, values, columns)
    if fmt == "json":
        return write_json(out, values, columns)
    if fmt == "odm":
        return write_odm(out, values, study_oid=study_oid, **odm_options)
    raise ExportError(f"unknown export format {fmt!r}; one of {', '.join(MEDIA_TYPES)}")


class DigestingFile:
    """A binary file wrapper that counts the bytes written and their sha256 on the way."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.size = 0
        self._sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def writable(self) -> bool:
        return True

    # io.TextIOWrapper (CSV) asks these of the file it wraps.
    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self.file.closed

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()
