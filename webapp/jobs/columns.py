"""The columns of the jobs list between the job's name and its plan, per view: the job type,
execution and domain on the list of all jobs; a type's own columns on its view (those it
declares in `extra["list_columns"]`, else its first parameters); and the pages of S0's import
and export job lists (typepages.py).

A column gives its header, its ?sort= key and SQL, and the text of its cell. The cells of a
page are worked out together (`cells`), so a column that needs a lookup, such as a dataset's
name, makes one query a page, not one a row.
"""
from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy import String, case, cast, select

from webapp import presenters
from webapp.extensions import db
from webapp.jobtypes import registry
from webapp.models import Dataset, Domain, Job


class NullsLast:
    """A sort key whose empty values come last in both directions (paginate calls asc/desc)."""

    def __init__(self, expression):
        self.expression = expression

    def asc(self):
        return self.expression.asc().nulls_last()

    def desc(self):
        return self.expression.desc().nulls_last()


def param_text(name: str):
    """A parameter as text in SQL, whether it is stored as a JSON string or number (SQLite's
    json_extract gives a number for 3 and text for "3": both become '3')."""
    return cast(Job.params[name].as_string(), String)


@dataclass(frozen=True)
class Column:
    key: str  # in ?sort=
    label: str
    help: str | None = None
    cls: str = ""

    def sort(self, user):
        raise NotImplementedError

    def texts(self, jobs) -> dict:
        """job id -> the cell's text (or Markup), for the jobs of a page."""
        return {job.id: self.text(job) for job in jobs}

    def text(self, job):
        raise NotImplementedError


@dataclass(frozen=True)
class TypeColumn(Column):
    key: str = "type"
    label: str = "Type"

    def sort(self, user):
        labels = {jt.key: jt.label.lower() for jt in registry.all_types()}
        # By the label the column shows; a type no longer installed by its stored key.
        return case(labels, value=Job.job_type, else_=Job.job_type) if labels else Job.job_type

    def text(self, job):
        return presenters.type_label(job)


@dataclass(frozen=True)
class ScopeColumn(Column):
    key: str = "scope"
    label: str = "Execution"
    help: str | None = "By domain: it runs for its domain; by installation: for the whole installation"

    def sort(self, user):
        return Job.scope

    def text(self, job):
        return "By installation" if job.scope == "installation" else "By domain"


@dataclass(frozen=True)
class DomainColumn(Column):
    """The execution domain; with its OID (StudyOID) where the files it takes name it."""

    key: str = "domain"
    label: str = "Domain"
    with_oid: bool = False

    def sort(self, user):
        return NullsLast(Domain.name)

    def text(self, job):
        name = presenters.domain_label(job)
        oid = job.domain.oid if self.with_oid and job.domain is not None else None
        if not oid:
            return name
        return Markup('{} <span class="oid" title="StudyOID">{}</span>').format(name, oid)


@dataclass(frozen=True)
class ParamColumn(Column):
    """A parameter, with its type's default filled in; `empty` for no value, `labels` for
    stored codes shown as words."""

    empty: str = "—"
    labels: tuple = ()
    cls: str = "param"

    @property
    def name(self) -> str:
        return self.key.removeprefix("p.")

    def sort(self, user):
        return NullsLast(Job.params[self.name].as_string())

    def text(self, job):
        value = presenters.list_values(job).get(self.name)
        if value in (None, "", "—"):
            return self.empty
        return dict(self.labels).get(value, value)


@dataclass(frozen=True)
class DatasetColumn(Column):
    """The dataset an export job exports (its `dataset` parameter holds the dataset's id)."""

    key: str = "dataset"
    label: str = "Dataset"
    cls: str = "param"

    def sort(self, user):
        return NullsLast(select(Dataset.name).where(cast(Dataset.id, String) == param_text("dataset"))
                         .correlate(Job).scalar_subquery())

    def texts(self, jobs) -> dict:
        ids = {job.id: _dataset_id((job.params or {}).get("dataset")) for job in jobs}
        wanted = {value for value in ids.values() if value is not None}
        names = dict(db.session.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(wanted))).all()) \
            if wanted else {}
        return {job_id: names.get(dataset_id, "—" if dataset_id is None else f"deleted dataset #{dataset_id}")
                for job_id, dataset_id in ids.items()}


def _dataset_id(value) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


DEFAULT = (TypeColumn(), ScopeColumn(), DomainColumn())


def for_type(job_type: registry.JobType | None) -> tuple[Column, ...]:
    """The columns of a type's view that has no page of its own: the parameters it declares
    (else its first ones), then execution and domain."""
    params = tuple(ParamColumn(f"p.{key}", label) for key, label in presenters.list_columns(job_type))
    return (params or (TypeColumn(),)) + (ScopeColumn(), DomainColumn())


def cells(columns, jobs) -> dict[int, list]:
    """job id -> its cells in column order, for the jobs of a page."""
    per_column = [column.texts(jobs) for column in columns]
    return {job.id: [texts[job.id] for texts in per_column] for job in jobs}
