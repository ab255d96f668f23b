"""The validate and load steps of an envelope's chain (SPEC 9, S4).

An envelope is a zip holding manifest.json and the CSV files it names, or one CSV (an implicit
envelope). Both steps read the envelope through `_opened` and `_read`, so what validate accepts is
exactly what load reads. Nothing is ever extracted to disk: zip entries are read as streams, under
names checked first, and never beyond the sizes the archive declares (zipfile stops there, and
fails the CRC of an entry that lied).

Refused outright by validate (the envelope becomes Corrupt with the reason):
- an archive that cannot be read, an encrypted entry, a compression method zipfile cannot read;
- an entry whose name is unsafe to write anywhere: absolute, with a drive letter, a backslash, a
  `..` part or a control character (zip-slip);
- a nested archive (zip, gz, tgz, 7z, rar, tar, bz2, xz, zst... by name or by its first bytes);
- more than MAX_ENTRIES entries; more than BOMB_FACTOR x the upload limit uncompressed in all; an
  entry over 1 MiB that expands more than BOMB_RATIO times (CSV text expands 5-10 times);
- any file other than manifest.json and the CSV files it names;
- a manifest that is not JSON, not of FORMAT, names a file that is missing or not .csv, an unknown
  encoding, a delimiter that is not one character, or lacks a required column mapping;
- a CSV that is empty or has no rows under its header, whose header lacks a mapped column, that
  reads as one column (a wrong delimiter), with bytes that are not in its encoding, a NUL
  character, or a line over MAX_LINE_BYTES.

Load rejects single rows (an error notification per reason, the other rows load): see `REASONS`.
"""
import codecs
import csv
import json
import lzma
import re
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from flask import current_app
from sqlalchemy import String, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from webapp.execution.context import RunCancelled
from webapp.extensions import db
from webapp.linkage.chain import StepFailed, args_of, notify
from webapp.linkage.normalise import normalise_postcode, normalise_sex, parse_date
from webapp.linkage.upload import ZIP_MAGIC, limit_bytes
from webapp.models import Run
from webapp.models.linkage import Envelope, LinkageRecord

FORMAT = "firetime-envelope/1"
MANIFEST = "manifest.json"
FIELDS = ("id", "first_name", "surname", "dob", "sex", "postcode")
REQUIRED = ("id", "first_name", "surname", "dob")
DELIMITERS = (",", ";", "\t")  # what an implicit CSV may use (the one its header holds most of)
MAX_ENTRIES = 100
MAX_MANIFEST_BYTES = 1 << 20
BOMB_FACTOR = 20
BOMB_RATIO = 100
BOMB_RATIO_FROM = 1 << 20  # small entries may compress well (a column of blanks); only big ones count
MAX_LINE_BYTES = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".7z", ".rar", ".tar", ".bz2", ".tbz2", ".xz", ".txz", ".zst",
                    ".lzma", ".lz", ".jar", ".cab")
BATCH = 5000  # rows an INSERT carries
FIRST_LINES = 10  # line numbers a notification keeps
KEY_CHARS, NAME_CHARS, POSTCODE_CHARS = 100, 100, 20  # the record columns' sizes

# Why load rejects a row: one notification each (those about earlier ids name the envelope).
REASONS = {
    "fields": "wrong number of fields (the header has {n})",
    "no_id": "no id",
    "long_id": f"id longer than {KEY_CHARS} characters",
    "no_name": "no first name or no surname",
    "long_name": f"first name or surname longer than {NAME_CHARS} characters",
    "long_postcode": f"postcode longer than {POSTCODE_CHARS} characters",
    "bad_dob": "dob not a date",
    "repeated": "id repeated in the envelope (the first row with it is loaded)",
    "earlier": "id already in the project, brought by envelope #{id} “{name}”",
}
# Loaded, with a warning notification: a typing error in a date still helps the match step.
FUTURE_DOB = "dob in the future, loaded as written (a typing error?)"


@dataclass
class FileSpec:
    """One CSV of an envelope: its name (in the zip, or as uploaded), how to read it and which of its
    columns hold the person fields. An implicit CSV's delimiter ("") is found from its header."""

    name: str
    delimiter: str = ","
    encoding: str = "utf-8"
    columns: dict = field(default_factory=dict)  # person field -> column header
    optional: tuple = ()  # fields whose column may be absent


@dataclass
class Layout:
    """A CSV's header read against its spec: the column index of each person field, and the others."""

    width: int
    index: dict  # field -> column index
    extra: list  # (header, column index) of the columns kept as extra attributes


# --- the steps ------------------------------------------------------------------------------------

def validate(ctx, envelope: Envelope):
    """Check the archive, the manifest and every CSV to its last line; count the rows."""
    total = 0
    with _opened(envelope) as (specs, open_binary):
        for number, spec in enumerate(specs, 1):
            with open_binary(spec) as binary:
                _layout, rows = _read(spec, binary)
                count = 0
                for count, _row in enumerate(rows, 1):
                    if count % 20000 == 0:
                        ctx.check_cancelled()
            if not count:
                raise StepFailed(f"{spec.name} has a header but no rows.")
            total += count
            ctx.info(f"{spec.name}: {count} rows.")
            ctx.progress(100 * number // len(specs), f"{number} of {len(specs)} files checked")
    ctx.stat("files", len(specs))
    ctx.stat("rows", total)
    ctx.info(f"The envelope is readable: {len(specs)} file(s), {total} rows.")


def load(ctx, envelope: Envelope):
    """Insert the envelope's records in one transaction; bad rows are rejected, one error
    notification per reason, and the step still succeeds with the others loaded."""
    loader = _Loader(ctx, envelope, expected=_validated_rows(envelope))
    with _opened(envelope) as (specs, open_binary):
        loader.several_files = len(specs) > 1
        for spec in specs:
            with open_binary(spec) as binary:
                layout, rows = _read(spec, binary)
                for line, row in rows:
                    loader.add(spec.name, layout, line, row)
    loader.flush()
    loader.finish()


def _validated_rows(envelope: Envelope) -> int:
    """The rows the validate step counted (for load's progress), 0 if unknown."""
    stats = db.session.scalars(select(Run.stats).where(Run.envelope_id == envelope.id,
                                                       Run.args == args_of("validate", envelope.id))
                               .order_by(Run.id.desc()).limit(1)).first()
    return int((stats or {}).get("rows") or 0)


# --- opening an envelope ---------------------------------------------------------------------------

@contextmanager
def _opened(envelope: Envelope):
    """(the file specs, a function opening one's bytes) for a checked envelope. Anything the archive
    raises while it is read becomes a StepFailed saying so."""
    if not envelope.path:
        raise StepFailed("The envelope has no file.")
    path = f"{current_app.config['FILES_DIR']}/{envelope.path}"
    try:
        if envelope.kind == "zip":
            with zipfile.ZipFile(path) as archive:
                specs = _check_archive(archive)
                yield specs, lambda spec: archive.open(spec.name)
        else:
            spec = _check_plain(path, envelope.name)
            yield [spec], lambda _spec: open(path, "rb")
    except zipfile.BadZipFile as exc:
        raise StepFailed(f"The zip archive cannot be read: {exc}.") from exc
    except NotImplementedError as exc:  # a compression method zipfile does not know (deflate64...)
        raise StepFailed(f"The zip archive cannot be read: {exc}. Use the usual deflate compression.") from exc
    except (zlib.error, lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:  # (names unlike in the directory)
        raise StepFailed(f"The zip archive is damaged: {exc}.") from exc
    except FileNotFoundError as exc:
        raise StepFailed("The envelope's file is missing from the files directory.") from exc


def _check_plain(path: str, name: str) -> FileSpec:
    """An implicit envelope: one CSV with the default headers, delimiter found from its header."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    kind = _archive_kind(head)
    if kind:
        raise StepFailed(f"{name} is a {kind} archive, not a CSV file: upload a zip envelope or a CSV file.")
    if name.lower().endswith(".zip"):
        raise StepFailed(f"{name} is not a zip archive (it does not start as one); it cannot be read.")
    return FileSpec(name=name, delimiter="", columns={field: field for field in FIELDS}, optional=("sex", "postcode"))


def _check_archive(archive: zipfile.ZipFile) -> list[FileSpec]:
    """Refuse a dangerous or unexpected archive before reading anything of it but the manifest."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise StepFailed(f"The zip holds {len(infos)} entries; an envelope may hold at most {MAX_ENTRIES}.")
    for info in infos:
        if _unsafe(info.filename):
            raise StepFailed(f"The zip holds an entry with an unsafe path, “{_shown(info.filename)}”: "
                             "entries may not be absolute, name a drive, hold a backslash or go up with “..”.")
    files = [info for info in infos if not info.is_dir()]
    for info in files:
        if info.flag_bits & 0x1:
            raise StepFailed(f"The zip's entry “{_shown(info.filename)}” is encrypted: envelopes must not be.")
        if info.filename.lower().endswith(ARCHIVE_SUFFIXES):
            raise StepFailed(f"The zip holds another archive, “{_shown(info.filename)}”: nested archives are refused.")
    _check_sizes(files)
    specs = _manifest(archive)
    named = {spec.name for spec in specs} | {MANIFEST}
    for info in files:
        if info.filename not in named:
            raise StepFailed(f"The zip holds “{_shown(info.filename)}”, which the manifest does not name: "
                             "an envelope holds only manifest.json and the CSV files it names.")
    held = {info.filename for info in files}
    for spec in specs:
        if spec.name not in held:
            raise StepFailed(f"The manifest names {spec.name}, which the zip does not hold.")
        with archive.open(spec.name) as entry:
            kind = _archive_kind(entry.read(512))
        if kind:
            raise StepFailed(f"{spec.name} is a {kind} archive, not a CSV file: nested archives are refused.")
    return specs


def _check_sizes(files: list[zipfile.ZipInfo]):
    """The zip-bomb rule, on the sizes the archive declares (reading never goes beyond them)."""
    bound = BOMB_FACTOR * limit_bytes()
    total = sum(info.file_size for info in files)
    if total > bound:
        raise StepFailed(f"The zip would expand to {total:,} bytes, more than {BOMB_FACTOR} times the upload limit "
                         f"({bound:,} bytes): refused as a zip bomb.")
    for info in files:
        if info.file_size > BOMB_RATIO_FROM and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
            raise StepFailed(f"“{_shown(info.filename)}” expands {info.file_size // max(info.compress_size, 1):,} "
                             f"times (from {info.compress_size:,} to {info.file_size:,} bytes); more than "
                             f"{BOMB_RATIO} times is refused as a zip bomb.")


_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unsafe(name: str) -> bool:
    return (not name or name.startswith("/") or "\\" in name or bool(_DRIVE.match(name)) or bool(_CONTROL.search(name))
            or ".." in name.split("/"))


def _shown(name: str) -> str:
    """A name from the archive, fit to show: control characters made visible, bounded."""
    return _CONTROL.sub("?", name)[:200]


def _archive_kind(head: bytes) -> str:
    """The kind of archive or compressed file these first bytes start, or ""."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    for magic, kind in ((b"\x1f\x8b", "gzip"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"Rar!\x1a\x07", "RAR"),
                        (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd")):
        if head.startswith(magic):
            return kind
    if re.match(rb"BZh[1-9]\x31\x41\x59\x26\x53\x59", head):
        return "bzip2"
    if head[257:262] == b"ustar":
        return "tar"
    return ""


# --- the manifest -----------------------------------------------------------------------------------

def _manifest(archive: zipfile.ZipFile) -> list[FileSpec]:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        nested = next((name for name in archive.namelist() if name.endswith("/" + MANIFEST)), None)
        if nested:
            raise StepFailed(f"manifest.json must be at the top of the zip, beside the CSV files, not in a folder "
                             f"(found {_shown(nested)}).") from None
        raise StepFailed("The zip holds no manifest.json (see the manifest format).") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise StepFailed(f"manifest.json is {info.file_size:,} bytes; at most {MAX_MANIFEST_BYTES:,} are read.")
    try:
        data = json.loads(archive.read(MANIFEST).decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StepFailed(f"manifest.json is not JSON: {exc}.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StepFailed(f"manifest.json must be an object with \"format\": \"{FORMAT}\".")
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise StepFailed("manifest.json must list the envelope's CSV files under \"files\".")
    specs = [_file_spec(item, number) for number, item in enumerate(files, 1)]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise StepFailed("manifest.json names a file twice.")
    return specs


def _file_spec(item, number: int) -> FileSpec:
    where = f"manifest.json, file {number}"
    if not isinstance(item, dict):
        raise StepFailed(f"{where}: each file must be an object with a name and columns.")
    name = item.get("name")
    if not isinstance(name, str) or not name.lower().endswith(".csv") or _unsafe(name):
        raise StepFailed(f"{where}: the name must be a CSV file's, ending in .csv (not {_shown(repr(name))}).")
    delimiter = item.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        raise StepFailed(f"{where} ({name}): the delimiter must be one character, such as \",\" or \";\".")
    encoding = item.get("encoding", "utf-8")
    if not isinstance(encoding, str) or not _codec(encoding):
        raise StepFailed(f"{where} ({name}): unknown encoding {_shown(repr(encoding))} (say utf-8, latin-1, cp1252...).")
    columns = item.get("columns")
    if not isinstance(columns, dict) or not all(isinstance(v, str) and v.strip() for v in columns.values()):
        raise StepFailed(f"{where} ({name}): \"columns\" must map person fields to the CSV's column headers.")
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise StepFailed(f"{where} ({name}): unknown person field(s) {', '.join(map(_shown, unknown))}; the fields "
                         f"are {', '.join(FIELDS)} (other columns are kept as extra attributes by themselves).")
    missing = [f for f in REQUIRED if f not in columns]
    if missing:
        raise StepFailed(f"{where} ({name}): no column mapping for {', '.join(missing)} "
                         f"({', '.join(REQUIRED)} are required).")
    return FileSpec(name=name, delimiter=delimiter, encoding=encoding, columns=dict(columns))


def _codec(encoding: str) -> str:
    """The codec to read `encoding` with ("" if unknown or not a text encoding): UTF-8 as
    utf-8-sig, so a byte-order mark does not end up in the first header."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        return ""
    if not getattr(info, "_is_text_encoding", True):
        return ""
    return "utf-8-sig" if info.name == "utf-8" else info.name


# --- reading a CSV ----------------------------------------------------------------------------------

def _read(spec: FileSpec, binary) -> tuple[Layout, object]:
    """The CSV's layout from its header, and its rows as (line number, fields); blank lines skipped."""
    lines = _text_lines(binary, spec)
    first = next(lines, None)
    if first is None:
        raise StepFailed(f"{spec.name} is empty.")
    delimiter = spec.delimiter or _sniff(first)
    reader = csv.reader(_chain(first, lines), delimiter=delimiter)
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise StepFailed(f"{spec.name}, line 1: {_csv_problem(exc)}.") from exc
    layout = _layout(spec, header, delimiter)
    return layout, _rows(spec, reader)


def _chain(first, rest):
    yield first
    yield from rest


def _rows(spec: FileSpec, reader):
    before = reader.line_num
    try:
        for row in reader:
            if row:
                yield before + 1, row
            before = reader.line_num
    except csv.Error as exc:
        raise StepFailed(f"{spec.name}, line {before + 1}: {_csv_problem(exc)}.") from exc


def _csv_problem(exc: csv.Error) -> str:
    if "new-line character" in str(exc):
        return "a line break inside a field that is not in quotes (lines ended by a lone carriage return?)"
    return str(exc)


def _text_lines(binary, spec: FileSpec):
    """The file's lines as text (line ends kept, as csv wants them), decoded strictly: a byte that is
    not in the encoding, a NUL or an endless line fails the step, naming the line."""
    encoding = _codec(spec.encoding) or "utf-8-sig"
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    pending, number = "", 0
    while True:
        raw = binary.readline(MAX_LINE_BYTES)
        final = not raw
        number += 1
        if raw and not raw.endswith(b"\n") and len(raw) >= MAX_LINE_BYTES:
            raise StepFailed(f"{spec.name}, line {number}: longer than {MAX_LINE_BYTES:,} bytes; is it a CSV file?")
        try:
            text = decoder.decode(raw, final=final)
        except UnicodeDecodeError as exc:
            raise StepFailed(f"{spec.name}, line {number}: bytes that are not {_said(spec)} "
                             f"({exc.reason}: {exc.object[exc.start:exc.start + 4]!r}). "
                             "Save the file in its declared encoding, or declare the one it has.") from exc
        if "\x00" in text:
            raise StepFailed(f"{spec.name}, line {number}: a NUL character; is it a text file in {_said(spec)}?")
        if not pending and text.endswith("\n") and text.count("\n") == 1:
            yield text  # the usual case: one whole line
        else:
            pending += text
            while (cut := pending.find("\n")) >= 0:
                yield pending[:cut + 1]
                pending = pending[cut + 1:]
            if len(pending) > MAX_LINE_BYTES:
                raise StepFailed(f"{spec.name}, line {number}: longer than {MAX_LINE_BYTES:,} characters.")
        if final:
            if pending:
                yield pending
            return


def _said(spec: FileSpec) -> str:
    return spec.encoding if spec.delimiter else f"{spec.encoding} (an uploaded CSV file must be UTF-8)"


def _sniff(header_line: str) -> str:
    """An implicit CSV's delimiter: the one of , ; tab its header holds most of (comma if none)."""
    return max(DELIMITERS, key=header_line.count)


def _layout(spec: FileSpec, header: list[str], delimiter: str) -> Layout:
    keys = [column.strip().casefold() for column in header]
    if not any(keys):
        raise StepFailed(f"{spec.name}: the first line, which must be the header, is empty.")
    if len(header) == 1:
        other = next((d for d in DELIMITERS + ("|",) if d != delimiter and d in header[0]), None)
        if other:
            raise StepFailed(f"{spec.name}: the header reads as one column with the delimiter {_named(delimiter)}; "
                             f"the file seems to be separated by {_named(other)}. Correct the delimiter in the manifest.")
    index, missing = {}, []
    for person_field, column in spec.columns.items():
        key = column.strip().casefold()
        if keys.count(key) > 1:
            raise StepFailed(f"{spec.name}: the header holds the column “{_shown(column)}” twice.")
        if key in keys:
            index[person_field] = keys.index(key)
        elif person_field not in spec.optional:
            missing.append(f"{_shown(column)} ({person_field})" if column != person_field else person_field)
    if missing:
        shown = ", ".join(_shown(h) for h in header[:20])
        raise StepFailed(f"{spec.name}: the header lacks the column(s) {', '.join(missing)}; it has {shown}.")
    used = set(index.values())
    extra = [(_shown(header[i].strip()) or f"column {i + 1}", i) for i in range(len(header)) if i not in used]
    return Layout(width=len(header), index=index, extra=extra)


def _named(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma (,)", ";": "semicolon (;)", "|": "bar (|)"}.get(delimiter, repr(delimiter))


# --- loading ------------------------------------------------------------------------------------------

class _Loader:
    """Turns rows into records, rejecting bad ones, and inserts them in batches in the step's transaction."""

    def __init__(self, ctx, envelope: Envelope, expected: int):
        self.ctx, self.envelope, self.expected = ctx, envelope, expected
        self.several_files = False
        self.seen: set[str] = set()
        self.batch: list[dict] = []
        self.rejected: dict[str, list] = {}  # reason -> [count, first lines]
        self.doubtful: dict[str, list] = {}  # loaded rows with a warning: the same
        self.read = self.loaded = 0
        self.today = date.today().isoformat()
        self.envelope_names: dict[int, str] = {}

    def add(self, source: str, layout: Layout, line: int, row: list[str]):
        self.read += 1
        where = f"{source}:{line}" if self.several_files else line
        record, reason = self._record(layout, row)
        if reason is None and record["record_key"] in self.seen:
            reason = REASONS["repeated"]
        if reason is not None:
            _count(self.rejected, reason, where)
        else:
            self.seen.add(record["record_key"])
            record.update(source_file=source, line_no=line, where=where)
            self.batch.append(record)
        if len(self.batch) >= BATCH:
            self.flush()

    def _record(self, layout: Layout, row: list[str]) -> tuple[dict | None, str | None]:
        """The record a row makes, or why it is rejected."""
        if len(row) != layout.width:
            return None, REASONS["fields"].format(n=layout.width)
        value = {name: row[i].strip() for name, i in layout.index.items()}
        key, first, last = value["id"], value["first_name"], value["surname"]
        if not key:
            return None, REASONS["no_id"]
        if len(key) > KEY_CHARS:
            return None, REASONS["long_id"]
        if not first or not last:
            return None, REASONS["no_name"]
        if len(first) > NAME_CHARS or len(last) > NAME_CHARS:
            return None, REASONS["long_name"]
        dob = None
        if value["dob"]:
            dob = parse_date(value["dob"])
            if dob is None:
                return None, REASONS["bad_dob"]
        postcode = normalise_postcode(value.get("postcode"))
        if len(postcode) > POSTCODE_CHARS:
            return None, REASONS["long_postcode"]
        return {"project_id": self.envelope.project_id, "envelope_id": self.envelope.id, "record_key": key,
                "first_name": first, "surname": last, "dob": dob.isoformat() if dob else None,
                "sex": normalise_sex(value.get("sex")), "postcode": postcode,
                "extra": {name: row[i] for name, i in layout.extra if row[i] != ""}, "group_id": None}, None

    def flush(self):
        """Insert the batch, less the rows whose id the project holds already (earlier envelopes)."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        earlier = _held(self.envelope.project_id, [record["record_key"] for record in batch])
        rows = []
        for record in batch:
            where = record.pop("where")
            if record["record_key"] in earlier:
                _count(self.rejected, self._earlier_reason(earlier[record["record_key"]]), where)
                continue
            rows.append(record)
            if record["dob"] and record["dob"] > self.today:
                _count(self.doubtful, FUTURE_DOB, where)
        if rows:
            _insert(rows)
        self.loaded += len(rows)
        self._progress()

    def _earlier_reason(self, envelope_id: int) -> str:
        if envelope_id not in self.envelope_names:
            self.envelope_names[envelope_id] = db.session.scalar(select(Envelope.name).where(Envelope.id == envelope_id))
        return REASONS["earlier"].format(id=envelope_id, name=self.envelope_names[envelope_id])

    def _progress(self):
        if self.ctx.cancelled():
            db.session.rollback()
            raise RunCancelled("Cancelled on request; nothing of the envelope was loaded.")
        percent = min(99, 100 * self.read // self.expected) if self.expected else 0
        self.ctx.progress(percent, f"{self.read:,} rows read, {self.loaded:,} loaded")

    def finish(self):
        """Notifications, statistics and the record count, committed with the records."""
        rejected = sum(count for count, _lines in self.rejected.values())
        for reason, (count, lines) in sorted(self.rejected.items(), key=lambda item: -item[1][0]):
            notify(self.envelope, self.ctx, "load", "error", reason, count, lines)
            self.ctx.info(f"Rejected {count} row{'s' if count != 1 else ''}: {reason}: {_lines_text(lines, count)}.")
        for reason, (count, lines) in self.doubtful.items():
            notify(self.envelope, self.ctx, "load", "warning", reason, count, lines)
            self.ctx.warning(f"{count} row{'s' if count != 1 else ''} with a {reason}: {_lines_text(lines, count)}.")
        notify(self.envelope, self.ctx, "load", "info", f"{self.loaded} records loaded of {self.read} rows read.",
               self.loaded)
        self.envelope.record_count = self.loaded
        self.ctx.stat("rows_read", self.read)
        self.ctx.stat("loaded", self.loaded)
        self.ctx.stat("rejected", rejected)
        db.session.commit()
        self.ctx.progress(100, f"{self.loaded:,} records loaded")
        if rejected:
            self.ctx.warning(f"{rejected} of {self.read} rows were rejected, one notification per reason; the other "
                             f"{self.loaded} are loaded. The step succeeds, and the envelope ends with Errors.")
        else:
            self.ctx.info(f"Loaded all {self.loaded} rows.")


def _held(project_id: int, keys: list[str]) -> dict[str, int]:
    """Which of `keys` the project holds already: key -> the envelope that brought it. PostgreSQL
    gets the keys as one array (= ANY): 5,000 placeholders of an IN cost psycopg more than the query."""
    if db.session.connection().dialect.name == "postgresql":
        wanted = LinkageRecord.record_key == any_(bindparam("keys", keys, type_=ARRAY(String)))
    else:
        wanted = LinkageRecord.record_key.in_(keys)
    return dict(db.session.execute(select(LinkageRecord.record_key, LinkageRecord.envelope_id)
                                   .where(LinkageRecord.project_id == project_id, wanted)).all())


def _count(tally: dict, reason: str, where):
    """One more row for `reason`; the first FIRST_LINES places are kept."""
    entry = tally.setdefault(reason, [0, []])
    entry[0] += 1
    if len(entry[1]) < FIRST_LINES:
        entry[1].append(where)


def _insert(rows: list[dict]):
    """Insert records in the step's transaction: COPY on PostgreSQL (psycopg's pipelined executemany
    took 8 s for 100,000 rows, COPY under 1 s), executemany elsewhere."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        db.session.execute(insert(LinkageRecord.__table__), rows)
        return
    columns = list(rows[0])
    raw = connection.connection.driver_connection
    with raw.cursor().copy(f"COPY {LinkageRecord.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[name]) if name == "extra" else row[name] for name in columns])


def _lines_text(lines: list, count: int) -> str:
    text = ", ".join(str(line) for line in lines)
    return f"line{'s' if count != 1 else ''} {text}{'…' if count > len(lines) else ''}"

