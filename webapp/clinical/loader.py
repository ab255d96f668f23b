"""Import one ODM file into a domain's clinical data, in one transaction (S0 6.5.1).

The file is parsed in a child process (clinical/parsing.py, webapp/formats/odm.py) that sends
batches of values as columns. Each batch is mapped to integer keys (subjects, OIDs and items
are looked up, and the new ones inserted, once per batch) and compared with the values stored
for its records (one query; none for records made in this batch); only new and changed values
are written (PostgreSQL: COPY, or COPY into a staging table and one upsert; SQLite:
executemany). Changed values are audited old -> new in bulk under the importing user. Nothing
is committed until the whole file has been read: a file that fails anywhere leaves nothing
behind (the caller rolls back)."""
import gc
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress
from operator import not_

from sqlalchemy import insert, select

from webapp.clinical.parsing import Batch, ParsedFile
from webapp.extensions import db
from webapp.formats.odm import ClinicalData, OdmError
from webapp.models import AuditEvent, ClinicalOid, ClinicalRecord, Domain, ItemDef, ItemValue, OidKind, Subject
from webapp.models.clinical import OID_MAX, REPEAT_MAX
from webapp.models.types import utcnow

VALUE_COLUMNS = ("record_id", "item_id", "value")
RECORD_KEY = ("subject_id", "event_id", "event_repeat", "form_id", "group_id", "group_repeat")


class ImportRefused(Exception):
    """The file is refused whole, with the reason (and where, when known)."""


@dataclass
class FileStats:
    subjects: int = 0
    events: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    bytes: int = 0
    seconds: float = 0.0
    study_oids: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"subjects": self.subjects, "events": self.events, "values_inserted": self.inserted,
                "values_updated": self.updated, "values_unchanged": self.unchanged, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Actor:
    """Who the changes are audited under: the job's run-as user, or whoever started the run."""

    id: int | None
    name: str


def allowed_domains(domain_id: int) -> dict[str, Domain]:
    """StudyOID -> domain: the job's domain and the sites below it that have an OID."""
    ids = Domain.subtree_ids([domain_id])
    return {domain.oid: domain for domain in db.session.scalars(select(Domain).where(Domain.id.in_(ids)))
            if domain.oid}


def import_file(path: str, domain_id: int, actor: Actor, run_id: int | None = None) -> FileStats:
    """Read and store one file in the open transaction; the caller commits or rolls back.
    Raises ImportRefused or OdmError with the reason. The file is parsed in a child process
    (clinical/parsing.py) while this one maps and writes the batch before."""
    started = time.monotonic()
    domains = allowed_domains(domain_id)
    home = db.session.get(Domain, domain_id)
    stats = FileStats()
    keys = None
    writer = Writer(db.session.connection())
    try:
        with _without_gc(), ParsedFile(path) as parsed:
            for part in parsed:
                writer.wait()  # the batch before is written before the database is asked anything
                if isinstance(part, ClinicalData):
                    target = domains.get(part.study_oid)
                    if target is None:
                        raise ImportRefused(_not_ours(part.study_oid, home, domains))
                    keys = KeyMap(target.id)
                    keys.define_items(part.item_defs.values())
                    keys.load()
                    parsed.max_lengths = keys.max_lengths()
                    stats.study_oids.append(part.study_oid)
                    continue
                _store(part, keys, actor, run_id, stats, writer)
    finally:
        writer.wait(raise_error=False)  # never leave a thread on the connection the caller rolls back
    writer.wait()
    stats.subjects, stats.events, stats.bytes = parsed.subjects, parsed.study_events, parsed.bytes_read
    stats.seconds = time.monotonic() - started
    return stats


@contextmanager
def _without_gc():
    """The cyclic garbage collector off while a file is imported: the import makes a few tuples a
    value and no cycles, and the collections their number set off took 0.2-0.5 s of a 50 MB
    file's import (each full one walks the whole heap of the work horse)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _not_ours(study_oid, home, domains) -> str:
    if home is None or not home.oid:
        return (f"The file's StudyOID is {study_oid[:OID_MAX]!r}, but the job's domain has no OID to compare it "
                "with: set the domain's OID (StudyOID) on the domains page.")
    sites = sorted(oid for oid, domain in domains.items() if domain.id != home.id)
    also = f" or one of its sites ({', '.join(sites)})" if sites else ""
    return (f"The file's StudyOID is {study_oid[:OID_MAX]!r}; this job imports only into {home.name} "
            f"(StudyOID {home.oid!r}){also}. Nothing was imported.")


class KeyMap:
    """A domain's subjects, OIDs and items as integer ids, looked up (and the new ones inserted)
    a batch at a time; only what the file names is held in memory."""

    def __init__(self, domain_id: int):
        self.domain_id = domain_id
        self.subjects: dict[str, int] = {}
        self.oids: dict[str, dict[str, int]] = {kind: {} for kind in OidKind}  # kind -> OID -> id
        self.items: dict[str, int] = {}
        self.item_ids: list[int] = []  # the id of each item OID of the ClinicalData, in Batch.items order
        self.batch_records: dict[tuple, int] = {}  # the current batch's records: key -> id
        self.new_records: set[int] = set()  # those made for this batch: they have no values yet
        self.new_subjects: set[int] = set()  # those made for this batch: they have no records yet
        # PostgreSQL: rows made for this batch (ids from the sequences), written by the Writer's
        # thread with the batch's values: (table, columns, rows with their ids first).
        self.pending: list[tuple] = []

    def define_items(self, defs) -> None:
        """Item definitions from the file's metadata: new ones inserted, known ones updated."""
        defs = list(defs)
        if not defs:
            return
        known = {row.oid: row for row in db.session.scalars(select(ItemDef).where(
            ItemDef.domain_id == self.domain_id, ItemDef.oid.in_([d.oid for d in defs])))}
        for item in defs:
            row = known.get(item.oid) or ItemDef(domain_id=self.domain_id, oid=_cut(item.oid))
            row.name = _cut(item.name or row.name or item.oid, 200)
            row.data_type = _cut(item.data_type or row.data_type or "text", 20)
            row.length = item.length if item.length is not None else row.length
            if item.oid not in known:
                db.session.add(row)
        db.session.flush()

    def max_lengths(self) -> dict[str, int]:
        return dict(db.session.execute(select(ItemDef.oid, ItemDef.length).where(
            ItemDef.domain_id == self.domain_id, ItemDef.length.isnot(None))).all())

    def ids(self, batch: Batch) -> tuple[list[int], list[int]]:
        """The record id and item id of each of the batch's values; the records (item group
        instances of subjects) looked up or made. Each distinct head and item is mapped once;
        the per-value columns are made by `map` over lists."""
        heads = batch.heads
        self.new_subjects = set(self._learn(Subject, Subject.subject_key, self.subjects,
                                            {head[0] for head in heads}))
        for kind, index in ((OidKind.EVENT, 1), (OidKind.FORM, 3), (OidKind.GROUP, 4)):
            self._learn_oids(kind, {head[index] for head in heads})
        new_items = batch.items[len(self.item_ids):]
        if new_items:
            self._learn(ItemDef, ItemDef.oid, self.items, set(new_items))
            self.item_ids.extend(map(self.items.__getitem__, new_items))
        subjects = self.subjects
        events, forms, groups = (self.oids[kind] for kind in (OidKind.EVENT, OidKind.FORM, OidKind.GROUP))
        keys = [(subjects[subject], events[event_oid], event_repeat, forms[form_oid], groups[group_oid],
                 group_repeat) for subject, event_oid, event_repeat, form_oid, group_oid, group_repeat in heads]
        records = self._records(set(keys))
        self.batch_records = records
        record_of_head = list(map(records.__getitem__, keys))
        return (list(map(record_of_head.__getitem__, batch.head_of)),
                list(map(self.item_ids.__getitem__, batch.item_of)))

    def _records(self, wanted: set) -> dict[tuple, int]:
        """Record key -> id for the batch's records (only the batch's are held), new ones made."""
        table = ClinicalRecord.__table__
        columns = [table.c[name] for name in RECORD_KEY]

        def stored(subject_ids):
            found = {}
            for start in range(0, len(subject_ids), 500):
                for row in db.session.execute(select(table.c.id, *columns).where(
                        table.c.subject_id.in_(subject_ids[start:start + 500]))):
                    found[tuple(row[1:])] = row[0]
            return found

        found = stored(sorted({record[0] for record in wanted} - self.new_subjects))
        new = [record for record in wanted if record not in found]
        self.new_records = set()
        if new:
            ids = self._add(table, RECORD_KEY, new)
            found.update(zip(new, ids))
            self.new_records = set(ids)
        return {record: found[record] for record in wanted}

    def _learn(self, model, column, cache, wanted) -> list[int]:
        """Ids of the values not known yet, inserted now (their ids returned); the others cached."""
        missing = [value for value in wanted if value not in cache]
        if not missing:
            return []
        _check_lengths(missing, column.key)
        # Every column written out: PostgreSQL's COPY takes no Python defaults.
        if model is ItemDef:
            rows = [(self.domain_id, oid, oid, "text", None) for oid in missing]
            columns = ("domain_id", "oid", "name", "data_type", "length")
        else:
            rows = [(self.domain_id, value) for value in missing]
            columns = ("domain_id", column.key)
        ids = self._add(model.__table__, columns, rows)
        cache.update(zip(missing, ids))
        return ids

    def _learn_oids(self, kind, wanted) -> None:
        missing = [oid for oid in wanted if oid not in self.oids[kind]]
        if not missing:
            return
        _check_lengths(missing, f"{kind} OID")
        rows = [(self.domain_id, str(kind), oid, "") for oid in missing]
        ids = self._add(ClinicalOid.__table__, ("domain_id", "kind", "oid", "name"), rows)
        self.oids[kind].update(zip(missing, ids))

    def _add(self, table, columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
        """Insert rows (tuples of `columns`); their ids, in order. PostgreSQL: ids from the table's
        sequence (one query), the rows queued in `pending` for the Writer, whose thread COPYs them
        before the batch's values, while this one maps the next batch. SQLite: one executemany
        through the driver (through SQLAlchemy it built each row's parameters in Python); the
        transaction holds SQLite's write lock from its first row, so the rows get consecutive ids
        (SQLite gives a new row the largest id plus one) ending at last_insert_rowid() (this
        connection's)."""
        connection = db.session.connection()
        if connection.dialect.name != "postgresql":
            connection.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
            last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar()
            return list(range(last - len(rows) + 1, last + 1))
        ids = connection.exec_driver_sql(
            f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, %(n)s)",
            {"n": len(rows)}).scalars().all()
        self.pending.append((table.name, ("id", *columns), [(id_, *row) for id_, row in zip(ids, rows)]))
        return ids

    def take_pending(self) -> list[tuple]:
        pending, self.pending = self.pending, []
        return pending

    def load(self) -> None:
        """The domain's subjects, OIDs and items, once per file: a lookup a batch by a list of
        keys cost a scan on PostgreSQL while the planner thought the new tables small."""
        self.subjects = dict(db.session.execute(select(Subject.subject_key, Subject.id)
                                                .where(Subject.domain_id == self.domain_id)).all())
        self.items = dict(db.session.execute(select(ItemDef.oid, ItemDef.id)
                                             .where(ItemDef.domain_id == self.domain_id)).all())
        self.oids = {kind: {} for kind in OidKind}
        for kind, oid, id_ in db.session.execute(select(ClinicalOid.kind, ClinicalOid.oid, ClinicalOid.id)
                                                 .where(ClinicalOid.domain_id == self.domain_id)):
            self.oids[kind][oid] = id_


def _check_lengths(values, what) -> None:
    for value in values:
        if len(value) > OID_MAX:
            raise ImportRefused(f"A {what.replace('_', ' ')} is {len(value)} characters long "
                                f"({value[:40]!r}…); at most {OID_MAX} are kept. Nothing was imported.")


def _cut(text, limit=OID_MAX):
    return (text or "")[:limit]


# --- compare and write -------------------------------------------------------------------------

class Writer:
    """Writes a batch: the subjects, OIDs and records made for it (PostgreSQL), then its values.
    On PostgreSQL it does so in a thread, while this process takes the next batch from the
    parsing process (psycopg gives up the GIL while the server works); the caller waits for it
    before it uses the connection again. On SQLite (one thread
    a connection) it writes at once."""

    def __init__(self, connection):
        self.connection = connection
        self.background = connection.dialect.name == "postgresql"
        self.thread = None
        self.error = None

    def write(self, made, fresh, writes, audit_records) -> None:
        self.wait()
        if not self.background:
            _write_batch(self.connection, made, fresh, writes, audit_records)
            return

        def work():
            try:
                _write_batch(self.connection, made, fresh, writes, audit_records)
            except BaseException as exc:  # raised in the caller's thread by wait()
                self.error = exc
        self.thread = threading.Thread(target=work, name="import-writer", daemon=True)
        self.thread.start()

    def wait(self, raise_error=True) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None and raise_error:
            error, self.error = self.error, None
            raise error


def _write_batch(connection, made, fresh, writes, audit_records) -> None:
    """`made`: KeyMap.pending, the subjects, OIDs, items and records made for the batch
    (PostgreSQL), first, as they are what the others refer to."""
    for table, columns, rows in made:
        _copy(connection, table, columns, rows)
    if fresh:
        _insert(connection, fresh)
    if writes:
        _upsert(connection, writes)
    if audit_records:
        connection.execute(insert(AuditEvent.__table__), audit_records)


def _store(batch: Batch, keys: KeyMap, actor: Actor, run_id, stats: FileStats, writer: Writer) -> None:
    """Compare the batch with what is stored for its records (one query), then write only the
    new and changed values: SQLite executemany, PostgreSQL COPY into a staging table and one
    INSERT … ON CONFLICT. A re-import of unchanged data writes nothing."""
    if keys is None:  # the reader yields a ClinicalData before its rows
        raise OdmError("value rows came before their ClinicalData")
    for head in batch.heads:
        if len(head[2]) > REPEAT_MAX or len(head[5]) > REPEAT_MAX:
            raise ImportRefused(f"A repeat key of subject {head[0]!r} is longer than {REPEAT_MAX} characters. "
                                "Nothing was imported.")
    records, items = keys.ids(batch)
    latest = dict(zip(zip(records, items), batch.values))  # the last value kept when a key repeats
    if len(latest) == len(batch):
        rows = list(zip(records, items, batch.values))
    else:
        rows = [(*key, value) for key, value in latest.items()]
        records = [row[0] for row in rows]
    # Records made for this batch have no values yet: theirs go straight in. The others (a
    # subject's values that a batch's end cut in two, or a re-import) are compared.
    old_records = set(keys.batch_records.values()) - keys.new_records
    if not old_records:
        stats.inserted += len(rows)
        writer.write(keys.take_pending(), rows, [], [])
        return
    is_old = list(map(old_records.__contains__, records))
    fresh = list(compress(rows, map(not_, is_old)))
    stored = _stored_values(db.session.connection(), old_records)
    writes, changed = [], []
    missing = object()
    for row in compress(rows, is_old):
        old = stored.get(row[:2], missing)
        if old is missing:
            writes.append(row)
        elif old != row[2]:
            writes.append(row)
            changed.append((row[:2], old, row[2]))
    stats.updated += len(changed)
    stats.inserted += len(fresh) + len(writes) - len(changed)
    stats.unchanged += len(rows) - len(fresh) - len(writes)
    writer.write(keys.take_pending(), fresh, writes, _audit_records(changed, keys, actor, run_id) if changed else [])


def _stored_values(connection, record_ids) -> dict:
    table = ItemValue.__table__
    found = {}
    ids = sorted(record_ids)
    for start in range(0, len(ids), 1000):
        for record_id, item_id, value in connection.execute(
                select(table.c.record_id, table.c.item_id, table.c.value)
                .where(table.c.record_id.in_(ids[start:start + 1000]))):
            found[record_id, item_id] = value
    return found


_UPSERT = ("INSERT INTO item_values (record_id, item_id, value) {source} ON CONFLICT (record_id, item_id) "
           "DO UPDATE SET value = excluded.value")


def _insert(connection, rows) -> None:
    """Values that cannot exist yet: straight in (PostgreSQL: COPY)."""
    if connection.dialect.name == "postgresql":
        _copy(connection, "item_values", VALUE_COLUMNS, rows)
    else:
        connection.exec_driver_sql("INSERT INTO item_values (record_id, item_id, value) VALUES (?, ?, ?)", rows)


def _upsert(connection, rows) -> None:
    if connection.dialect.name == "postgresql":
        _stage(connection)
        _copy(connection, "import_stage", VALUE_COLUMNS, rows)
        connection.exec_driver_sql(_UPSERT.format(source="SELECT record_id, item_id, value FROM import_stage"))
    else:
        connection.exec_driver_sql(_UPSERT.format(source="VALUES (?, ?, ?)"), rows)


def _copy(connection, table, columns, rows) -> None:
    """COPY the rows in. The values, the most rows by far, in binary with their types given:
    psycopg's C code writes each row and the server parses no text (the writer took 1.0-1.3 s for
    a 50 MB file's values where COPY text built in Python took 1.3-1.9 s); the rest as text."""
    raw = connection.connection.driver_connection
    binary = columns == VALUE_COLUMNS
    with raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                           f"{' (FORMAT BINARY)' if binary else ''}") as copy:
        if binary:
            copy.set_types(["int4", "int4", "text"])
        for row in rows:
            copy.write_row(row)


def _stage(connection) -> None:
    """PostgreSQL's staging table for COPY, empty: made once per connection (a temporary table
    is the connection's own and goes with it)."""
    if connection.exec_driver_sql("SELECT to_regclass('pg_temp.import_stage')").scalar() is None:
        connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE import_stage (record_id integer, item_id integer, value text)")
    else:
        connection.exec_driver_sql("TRUNCATE import_stage")


def _audit_records(changed, keys: KeyMap, actor: Actor, run_id) -> list[dict]:
    """One audit record per changed value (inserted in one statement with the batch's values)."""
    subject = {id_: key for key, id_ in keys.subjects.items()}
    oid = {id_: oid for by_kind in keys.oids.values() for oid, id_ in by_kind.items()}
    item = {id_: oid for oid, id_ in keys.items.items()}
    record = {id_: key for key, id_ in keys.batch_records.items()}
    at = utcnow()
    records = []
    for (record_id, item_id), old, new in changed:
        subject_id, event_id, event_repeat, form_id, group_id, group_repeat = record[record_id]
        where = (f"{subject[subject_id]} / {oid[event_id]}[{event_repeat}] / {oid[form_id]} / "
                 f"{oid[group_id]}[{group_repeat}] / {item[item_id]}")
        records.append({"at": at, "actor_id": actor.id, "actor_name": actor.name, "run_id": run_id,
                        "action": "update", "object_type": "item_value", "object_id": None,
                        "object_name": where[:200], "domain_id": keys.domain_id,
                        "before": {"value": old}, "after": {"value": new}, "message": ""})
    return records
