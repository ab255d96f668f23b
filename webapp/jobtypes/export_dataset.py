"""Export dataset (S0 6.5.2): a dataset's values to one file in the archive of exported files,
as CSV, tab-separated text, JSON or ODM 1.3 XML, streamed from the database to the file (memory
stays flat whatever the size).

Three job types live here:
- `export_dataset`: the scheduled export a user creates (parameters: dataset and format);
- `export_extract`: the manual extracts of a domain (a dataset page's *Export now*). Each domain
  has one such job, made on first use; every extract is a run of it with `dataset=… format=…`,
  so it goes through dispatch like any run (live log, audit, the export queue shared with the
  scheduled exports, S0 6.5.3) and its file lands in the archive;
- `export_dataset.orphans`: the system job that deletes export files left on disk that no file
  record refers to (a run that died while writing), once older than the retention period.
"""
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from marshmallow import Schema, fields, validate
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.utils import secure_filename

from webapp.extensions import db
from webapp.formats import writers
from webapp.formats.odm import ItemDef as OdmItemDef
from webapp.jobtypes.registry import JobType, SystemJob, register
from webapp.models import (ClinicalOid, ClinicalRecord, Dataset, DatasetItem, Domain, ItemDef, ItemValue, Job,
                           JobState, Run, RunFile, Scope, Subject)
from webapp.models.clinical import FORMAT_EXTENSIONS, FORMAT_LABELS, ExportFormat
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.settings import get_setting
from webapp.models.types import utcnow

KEY = "export_dataset"
EXTRACT_KEY = "export_extract"
ORPHANS_KEY = "export_dataset.orphans"
QUEUE = "export"
FORMAT_CHOICES = [(f.value, FORMAT_LABELS[f]) for f in ExportFormat]
ID_MAX = 2**31 - 1
READ_BATCH = 10_000  # value rows fetched at a time from the server-side cursor
CHECK_EVERY = 20_000  # rows between checks for a cancel


class ExportFailed(Exception):
    """The export cannot be made: its message says why and what to do."""


class ExportParams(Schema):
    dataset = fields.Integer(required=True, strict=False, validate=validate.Range(1, ID_MAX), metadata={
        "label": "Dataset", "choices": "datasets",
        "description": "A dataset of the job's domain (its number, as on the datasets page)."})
    format = fields.String(load_default=ExportFormat.CSV.value,
                           validate=validate.OneOf([key for key, _ in FORMAT_CHOICES], error="One of " + ", ".join(
                               f"{key} ({label})" for key, label in FORMAT_CHOICES) + "."),
                           metadata={"label": "Format", "choices": FORMAT_CHOICES})


class ExtractParams(ExportParams):
    """A domain's manual extracts: each run names its dataset (Export now does); the job itself
    keeps none, so its settings (a report, say) save without one."""

    dataset = fields.Integer(load_default=None, allow_none=True, strict=False, validate=validate.Range(1, ID_MAX),
                             metadata={"label": "Dataset", "choices": "datasets",
                                       "description": "Left empty: each run names it (dataset=<number> format=csv)."})


# --- the values of a dataset, in the writers' order ---------------------------------------------

class ExportPlan:
    """What an export of `dataset` reads and writes: its columns, item definitions, the OIDs of
    the ids it reads, and the domain's StudyOID. Small (one row per item, OID or definition).

    The order of the file: subjects by subject key; within a subject, events, forms, item groups
    and items by OID, and repeat keys as numbers where they are numbers (2 before 10). The
    database sorts by subject only (a walk of its index on SQLite); each subject's values are
    sorted here, so at most one subject's values are held."""

    def __init__(self, dataset: Dataset):
        self.dataset_id, self.domain_id = dataset.id, dataset.domain_id
        domain = db.session.get(Domain, dataset.domain_id)
        self.study_oid = domain.oid or domain.name
        self.oid = dict(db.session.execute(select(ClinicalOid.id, ClinicalOid.oid)
                                           .where(ClinicalOid.domain_id == domain.id)).all())
        items = {row.id: row for row in db.session.scalars(select(ItemDef).where(ItemDef.domain_id == domain.id))}
        self.item_oid = {id_: item.oid for id_, item in items.items()}
        self.rank = _ranks(self.oid)  # ClinicalOid ids and item ids are apart: two tables, two maps
        self.item_rank = _ranks(self.item_oid)
        selected = db.session.execute(select(DatasetItem.form_id, DatasetItem.group_id, DatasetItem.item_id)
                                      .where(DatasetItem.dataset_id == dataset.id).distinct()).all()
        selected.sort(key=lambda row: (self.oid[row[0]], self.oid[row[1]], self.item_oid[row[2]]))
        self.columns = writers.columns_for((self.oid[f], self.oid[g], self.item_oid[i]) for f, g, i in selected)
        self.item_defs = [OdmItemDef(item.oid, item.name, item.data_type, item.length)
                          for item in sorted({items[i] for _, _, i in selected}, key=lambda item: item.oid)]
        self.subjects = db.session.scalar(select(func.count()).select_from(Subject)
                                          .where(Subject.domain_id == domain.id))
        self.values_read = self.subjects_read = 0

    def statement(self):
        """The dataset's values (an item of the dataset where the dataset collects it), subject by
        subject."""
        record, value, chosen = ClinicalRecord, ItemValue, DatasetItem
        return (select(Subject.subject_key, record.event_id, record.event_repeat, record.form_id, record.group_id,
                       record.group_repeat, value.item_id, value.value)
                .join(record, record.subject_id == Subject.id)
                .join(value, value.record_id == record.id)
                .join(chosen, and_(chosen.dataset_id == self.dataset_id, chosen.event_id == record.event_id,
                                   chosen.form_id == record.form_id, chosen.group_id == record.group_id,
                                   chosen.item_id == value.item_id))
                .where(Subject.domain_id == self.domain_id)
                .order_by(Subject.subject_key))

    def values(self, on_subject=None):
        """The value rows the writers take, read a batch at a time (a server-side cursor on
        PostgreSQL). `on_subject(n)` is called as the n-th subject starts (progress, cancel);
        `values_read` and `subjects_read` count what was read."""
        subject, held, subjects, count = None, [], 0, 0
        try:
            for rows in _batches(self.statement(), READ_BATCH):
                count += len(rows)
                for row in rows:
                    if row[0] != subject:
                        if held:
                            yield from self._sorted(held)
                            held = []
                        subject = row[0]
                        subjects += 1
                        if on_subject is not None:
                            on_subject(subjects)
                    held.append(row)
            if held:
                yield from self._sorted(held)
        finally:
            self.values_read, self.subjects_read = count, subjects

    def _sorted(self, rows) -> list[tuple]:
        """One subject's rows in the file's order, with OIDs for ids."""
        oid, item_oid, rank, item_rank = self.oid, self.item_oid, self.rank, self.item_rank
        rows.sort(key=lambda r: (rank[r[1]], len(r[2]), r[2], rank[r[3]], rank[r[4]], len(r[5]), r[5],
                                 item_rank[r[6]]))
        return [(key, oid[event], event_repeat, oid[form], oid[group], group_repeat, item_oid[item], text)
                for key, event, event_repeat, form, group, group_repeat, item, text in rows]


# PostgreSQL, for the export's transaction only: the plan SQLite takes by itself, an index walk
# (the domain's subjects in key order, their records, the dataset's values) that streams in order
# with no sort. Left to itself with the statistics of freshly imported tables (or none: a server
# without autovacuum never has any) it chose hash joins and a per-row lookup that took minutes, or
# an on-disk sort of the whole export before the first row.
PG_EXPORT_PLAN = ("enable_hashjoin = off", "enable_mergejoin = off", "enable_sort = off", "jit = off")


def _batches(statement, size: int):
    """The statement's rows as lists of plain tuples, `size` at a time, read on the session's
    connection and in its transaction through the driver's own cursor: a million rows through
    SQLAlchemy's result objects took 4 to 6 s on SQLite, 1.7 s this way. PostgreSQL's cursor is a
    named (server-side) one, so the rows are not all fetched into memory first."""
    connection = db.session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    params = compiled.params
    if compiled.positiontup:
        params = tuple(params[name] for name in compiled.positiontup)
    raw = connection.connection.driver_connection
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        for setting in PG_EXPORT_PLAN:
            connection.exec_driver_sql(f"SET LOCAL {setting}")
    cursor = raw.cursor(name="firetime_export") if postgresql else raw.cursor()
    try:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def _ranks(oids: dict[int, str]) -> dict[int, int]:
    """id -> the place of its OID in OID order."""
    return {id_: n for n, id_ in enumerate(sorted(oids, key=oids.__getitem__))}


def file_name(dataset: Dataset, fmt: str, at: datetime | None = None) -> str:
    """`<dataset>_<yyyymmdd_HHMMSS>.<ext>` in server time; a name with nothing a file name may
    keep becomes dataset-<id>."""
    at = (at or utcnow()).astimezone(ZoneInfo(current_app.config["TIMEZONE"]))
    stem = secure_filename(dataset.name) or f"dataset-{dataset.id}"
    return f"{stem}_{at:%Y%m%d_%H%M%S}.{FORMAT_EXTENSIONS[ExportFormat(fmt)]}"


# --- running an export ---------------------------------------------------------------------------

def dataset_problem(dataset_id, domain_id) -> str | None:
    """Why an export job of domain `domain_id` cannot export dataset `dataset_id`, or None: for
    the job form, which checks it when the job is saved (the parameters' schema cannot: it does
    not know the job's domain)."""
    dataset = db.session.get(Dataset, dataset_id) if isinstance(dataset_id, int) else None
    if dataset is None:
        return f"There is no dataset {dataset_id}: choose one on the datasets page."
    if domain_id is None or dataset.domain_id != domain_id:
        return "Choose a dataset of the job's execution domain: an export job exports only its domain's datasets."
    return None


def dataset_for(job_id: int, dataset_id: int) -> Dataset:
    """The dataset, if it is one of the job's domain; else ExportFailed saying why."""
    domain_id = db.session.scalar(select(Job.domain_id).where(Job.id == job_id))
    dataset = db.session.get(Dataset, dataset_id)
    if dataset is None:
        raise ExportFailed(f"Dataset {dataset_id} no longer exists: it was deleted after the job was saved. "
                           "Edit the job and choose another dataset.")
    if domain_id is None or dataset.domain_id != domain_id:
        raise ExportFailed(f"Dataset {dataset_id} is not a dataset of the job's domain: an export job exports "
                           "only datasets of its execution domain.")
    return dataset


def run_export(ctx, dataset, format):
    if dataset is None:
        raise ExportFailed("A manual extract names its dataset: use Export now on the dataset's page, or run the "
                           "job with the arguments dataset=<number> format=<csv, tsv, json or odm>.")
    chosen = dataset_for(ctx.job_id, dataset)
    plan = ExportPlan(chosen)
    if not plan.columns:
        raise ExportFailed(f"Dataset “{chosen.name}” selects no items: choose its items on the dataset's page.")
    name, label = file_name(chosen, format), FORMAT_LABELS[ExportFormat(format)]
    dataset_name = chosen.name
    ctx.info(f"Exporting dataset “{dataset_name}” ({len(plan.columns)} items, {plan.subjects:,} subjects in the "
             f"domain) as {label}.")

    def on_subject(done):
        if done % 50 == 0:
            ctx.check_cancelled()
            ctx.progress(100 * done / max(plan.subjects, 1), f"{done:,} subjects")

    path = None
    try:
        with ctx.output_file(name, content_type=writers.MEDIA_TYPES[format], mode="wb", dataset_id=chosen.id,
                             dataset_name=dataset_name, file_format=format) as out:
            path = out.name
            written = writers.write(format, out, plan.values(on_subject), columns=plan.columns,
                                    study_oid=plan.study_oid, item_defs=plan.item_defs)
    except BaseException:
        _remove_partial(path)  # a failed or cancelled export leaves no half file behind
        raise
    db.session.commit()  # ends the read transaction
    ctx.progress(100, "done")
    for key, value in (("dataset", dataset_name), ("format", format), ("values", plan.values_read),
                       ("subjects", plan.subjects_read), ("rows" if format != ExportFormat.ODM else "values_written",
                                                          written)):
        ctx.stat(key, value)
    if not plan.values_read:
        ctx.warning(f"Dataset “{dataset_name}” holds no values yet: the file has no data rows.")
    ctx.info(f"{plan.values_read:,} values of {plan.subjects_read:,} subjects written to {name}.")


def _remove_partial(path):
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


# --- manual extracts (a dataset page's Export now) ----------------------------------------------

def extract_job(domain: Domain) -> Job:
    """The domain's job whose runs are its manual extracts; made on first use. It is a system job
    (its name is fixed and it cannot be deleted) that runs only when asked: removing it stops
    the domain's extracts until it is restored."""
    query = Job.live().where(Job.job_type == EXTRACT_KEY, Job.domain_id == domain.id)
    job = db.session.scalar(query)
    if job is not None:
        return job
    for name in (f"Manual extracts: {domain.name}", f"Manual extracts: {domain.name} ({domain.id})"):
        job = Job(name=name[:120], job_type=EXTRACT_KEY, scope=Scope.DOMAIN, domain_id=domain.id, system=True,
                  plan={"kind": "disabled"}, params={}, state=JobState.ACTIVE,
                  description="Exports asked for from a dataset's page (Export now); each run is one extract.")
        db.session.add(job)
        try:
            db.session.commit()
            return job
        except IntegrityError:  # the name is taken, or a second request made the job first
            db.session.rollback()
            made = db.session.scalar(query)
            if made is not None:
                return made
    raise ExportFailed(f"No job for the manual extracts of {domain.name} could be made: its name is taken.")


def extract_args(dataset_id: int, fmt: str) -> str:
    return f"dataset={int(dataset_id)} format={ExportFormat(fmt).value}"


# --- the system job: export files nothing refers to ---------------------------------------------

def delete_orphaned_files(ctx):
    """Delete the files under the run files folder that no file record refers to (a run that died
    while writing its export leaves one behind) once they are older than the retention period, and
    the run folders that become empty. The archive's files all have records: they stay, whatever
    their age and whatever became of their jobs. A file of a run still queued or in progress is
    never touched, whatever its age."""
    days = int(get_setting("retention_days"))
    cutoff = (utcnow() - timedelta(days=days)).timestamp()
    root = os.path.join(ctx.files_dir, "runs")
    active = {str(run_id) for run_id in db.session.scalars(select(Run.id).where(Run.status.in_(ACTIVE_STATUSES)))}
    db.session.commit()
    old, kept_young, removed, folders = [], 0, 0, 0
    for folder, _, names in os.walk(root):
        relative = os.path.relpath(folder, ctx.files_dir)
        parts = relative.split(os.sep)  # runs/<run id>/…
        if len(parts) > 1 and parts[1] in active:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                young = os.lstat(path).st_mtime >= cutoff
            except FileNotFoundError:
                continue
            if young:
                kept_young += 1
            else:
                old.append(os.path.join(relative, name))
    for start in range(0, len(old), 500):
        batch = old[start:start + 500]
        referred = set(db.session.scalars(select(RunFile.path).where(RunFile.path.in_(batch))))
        for relative in batch:
            if relative not in referred:
                try:
                    os.remove(os.path.join(ctx.files_dir, relative))
                    removed += 1
                except FileNotFoundError:
                    pass
        db.session.commit()
        ctx.check_cancelled()
    for folder, subfolders, names in os.walk(root, topdown=False):
        if folder != root and not subfolders and not names:
            try:
                os.rmdir(folder)
                folders += 1
            except OSError:
                pass
    ctx.stat("files_deleted", removed)
    ctx.stat("files_younger_than_retention", kept_young)
    ctx.info(f"Retention is {days} days: deleted {removed} orphaned files and {folders} empty folders; "
             f"{kept_young} files are younger than that and were not looked at.")


register(JobType(
    key=KEY,
    label="Export dataset",
    run=run_export,
    params=ExportParams,
    user_creatable=True,
    queue=QUEUE,
    archive_files=True,
    description="Exports a dataset of the job's domain to a file (CSV, tab-separated text, JSON or ODM 1.3 XML) "
                "in the archive of exported files.",
    extra={"default_plan": {"kind": "period", "repeat": "weekly"},
           "list_columns": [("dataset", "Dataset"), ("format", "Format")],
           # The job form asks this when it saves: the parameters' schema cannot know the domain.
           "check_with_domain": lambda params, domain_id: {
               "dataset": problem} if (problem := dataset_problem(params.get("dataset"), domain_id)) else {}},
))
register(JobType(
    key=EXTRACT_KEY,
    label="Manual extracts",
    run=run_export,
    params=ExtractParams,
    queue=QUEUE,
    archive_files=True,
    description="A domain's extracts asked for with Export now on a dataset's page; each run exports one dataset.",
))
register(JobType(
    key=ORPHANS_KEY,
    label="Delete orphaned export files",
    run=delete_orphaned_files,
    automatic_plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["03:15"]},
    queue="system",
    system_job=SystemJob("Delete orphaned export files",
                         "Deletes files of runs that no file record refers to (left by a run that died while "
                         "writing), once older than the retention period. The archive's files stay."),
))
