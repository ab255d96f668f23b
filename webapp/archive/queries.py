"""The archive of exported files as a query: the export files the user may see (permissions.
archive_query), filtered by find text, dataset, job, format and creation date."""
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import contains_eager

from webapp.auth.permissions import archive_query
from webapp.executions.queries import _day as parse_day
from webapp.executions.queries import _local_midnight as local_midnight
from webapp.extensions import db
from webapp.jobs.editing import parse_id
from webapp.jobs.finding import like_pattern
from webapp.models import Job, RunFile
from webapp.models.clinical import FORMAT_LABELS, ExportFormat

TEXT_MAX = 200
CHOICES_MAX = 500  # datasets and jobs a filter offers (the find box reaches the rest)
SORTS = {"created": RunFile.created_at, "name": func.lower(RunFile.name), "dataset": func.lower(RunFile.dataset_name),
         "job": func.lower(Job.name), "format": RunFile.file_format, "size": RunFile.size}


@dataclass
class Filters:
    find: str = ""
    dataset: str = ""  # a dataset's name (kept on its files when the dataset is deleted)
    job: int | None = None
    file_format: str = ""
    date_from: date | None = None
    date_to: date | None = None
    problems: list = field(default_factory=list)

    @classmethod
    def from_args(cls, args) -> "Filters":
        problems = []
        fmt = args.get("format", "")
        filters = cls(find=" ".join(args.get("q", "").split())[:TEXT_MAX],
                      dataset=" ".join(args.get("dataset", "").split())[:TEXT_MAX],
                      job=parse_id(args.get("job")),
                      file_format=fmt if fmt in {f.value for f in ExportFormat} else "",
                      date_from=parse_day(args, "from", problems), date_to=parse_day(args, "to", problems),
                      problems=problems)
        if args.get("job") and filters.job is None:
            problems.append("That job is not one of the list's: the job filter was ignored.")
        if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
            problems.append("The “from” date is after the “to” date: they were swapped.")
            filters.date_from, filters.date_to = filters.date_to, filters.date_from
        return filters

    def args(self) -> dict:
        values = {"q": self.find, "dataset": self.dataset, "job": self.job, "format": self.file_format,
                  "from": self.date_from.isoformat() if self.date_from else "",
                  "to": self.date_to.isoformat() if self.date_to else ""}
        return {key: value for key, value in values.items() if value}

    @property
    def active(self) -> bool:
        return bool(self.args())


def files_query(user, filters: Filters):
    """The archive's files the user may see that match the filters, each with its job."""
    query = archive_query(user).options(contains_eager(RunFile.job))
    if filters.find:
        pattern = like_pattern(filters.find.lower())
        query = query.where(or_(func.lower(RunFile.name).like(pattern, escape="\\"),
                                func.lower(RunFile.dataset_name).like(pattern, escape="\\"),
                                func.lower(Job.name).like(pattern, escape="\\")))
    if filters.dataset:
        query = query.where(RunFile.dataset_name == filters.dataset)
    if filters.job:
        query = query.where(RunFile.job_id == filters.job)
    if filters.file_format:
        query = query.where(RunFile.file_format == filters.file_format)
    if filters.date_from:
        query = query.where(RunFile.created_at >= local_midnight(filters.date_from))
    if filters.date_to:
        query = query.where(RunFile.created_at < local_midnight(filters.date_to + timedelta(days=1)))
    return query


def choices(user) -> dict:
    """What the filters offer: the datasets and jobs of the files the user may see (a deleted
    job's too), and the formats."""
    files = archive_query(user).subquery()
    datasets = db.session.scalars(select(files.c.dataset_name).distinct().order_by(files.c.dataset_name)
                                  .limit(CHOICES_MAX)).all()
    jobs = db.session.execute(select(Job.id, Job.name, Job.deleted_at).where(Job.id.in_(select(files.c.job_id)))
                              .order_by(func.lower(Job.name), Job.id).limit(CHOICES_MAX)).all()
    return {"datasets": [(name, name) for name in datasets if name],
            "jobs": [(str(job.id), job.name + (" (deleted)" if job.deleted_at else "")) for job in jobs],
            "formats": [(f.value, FORMAT_LABELS[f]) for f in ExportFormat]}
