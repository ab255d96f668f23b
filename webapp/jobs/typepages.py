"""S0's Import jobs and Export jobs pages: the jobs list's view of one job type under a heading
of its own, with the columns S0 lists, a find hint saying what the box matches there, and a New
button that opens the job form with the type chosen; and what the job form says for the type.

A page is known by its type's key, so the Export jobs page answers (saying the type is not
installed, with no New button) before an export job type is registered.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from webapp.auth.permissions import can_see_server_paths
from webapp.jobs.columns import DEFAULT, DatasetColumn, DomainColumn, ParamColumn, for_type
from webapp.jobtypes import registry
from webapp.models.clinical import FORMAT_LABELS
from webapp.scheduling.sync import timezone

IMPORT_DIRECTORY_WORDS = "the import directory"
_TIMES_HINT = "and previous or next fire times typed as a date (2026-11-22) or a time (06:00)"


@dataclass(frozen=True)
class TypePage:
    key: str  # the job type's key
    title: str
    new_label: str
    columns: tuple
    find_placeholder: str
    find_hint: str
    plan_label: str = "Plan"
    # Jobs of the type run in a domain (by installation they would have nothing to work on):
    # the form says so next to the execution field and refuses "by installation".
    needs_domain: bool = False
    domain_note: str = ""


IMPORT = TypePage(
    key="import_data", title="Import jobs", new_label="New import job",
    columns=(DomainColumn(label="Study or site", with_oid=True),
             ParamColumn("p.subdirectory", "Directory", empty="import directory")),
    find_placeholder="Name, study or site, directory, date, 06:00",
    find_hint=f"Matches name, description, study or site (its name or OID), directory, {_TIMES_HINT}.",
    needs_domain=True,
    domain_note="An import job imports into the study or site chosen here: each file's StudyOID must be its "
                "OID or the OID of one of its sites.")

EXPORT = TypePage(
    key="export_dataset", title="Export jobs", new_label="New export job",
    columns=(DatasetColumn(), ParamColumn("p.format", "Format", labels=tuple((str(k), v) for k, v in FORMAT_LABELS.items())),
             DomainColumn(label="Study or site")),
    find_placeholder="Name, dataset, weekly, date, 06:00",
    find_hint=f"Matches name, description, dataset, period (daily, weekly, monthly), format, {_TIMES_HINT}.",
    plan_label="Period")

PAGES = {page.key: page for page in (IMPORT, EXPORT)}


def page_of(key: str | None) -> TypePage | None:
    return PAGES.get(key or "")


def columns_of(key: str | None) -> tuple:
    """The columns between the job's name and its plan on the view of `key` (empty: all jobs)."""
    if not key:
        return DEFAULT
    page = page_of(key)
    if page is not None:
        return page.columns
    return for_type(registry.get_or_none(key))


def find_params() -> set[str]:
    """Parameters the pages show, which the find box matches on every list."""
    return {column.name for page in PAGES.values() for column in page.columns if isinstance(column, ParamColumn)}


def needs_domain(job_type: registry.JobType | None) -> bool:
    if job_type is None:
        return False
    page = page_of(job_type.key)
    return bool(job_type.extra.get("needs_domain") or (page is not None and page.needs_domain))


def domain_note(job_type: registry.JobType | None) -> str:
    page = page_of(job_type.key) if job_type is not None else None
    if page is not None and page.domain_note:
        return page.domain_note
    return f"{job_type.label} jobs run in a domain: choose it here." if needs_domain(job_type) else ""


def default_plan(job_type: registry.JobType | None, now: datetime | None = None) -> dict | None:
    """The plan a new job of the type starts with (`extra["default_plan"]`), as the form's
    fields hold it; a period without a start starts at the next whole hour, server time."""
    declared = job_type.extra.get("default_plan") if job_type is not None else None
    if not isinstance(declared, dict) or not declared.get("kind"):
        return None
    plan = {key: value for key, value in declared.items() if key != "anchor"}
    if plan["kind"] == "period" and not plan.get("start"):
        local = (now or datetime.now(timezone())).astimezone(timezone())
        plan["start"] = (local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    return plan


@dataclass(frozen=True)
class Fact:
    """A read-only line above a type's parameters."""

    label: str
    value: str
    hint: str = ""
    is_path: bool = False


def form_facts(job_type: registry.JobType | None, user) -> list[Fact]:
    """For an import job: the import directory it reads (its path only to those who may see
    server paths; to others, in words)."""
    if job_type is None or job_type.key != IMPORT.key:
        return []
    hint = ("Files are read from here, or from the subdirectory named below, which must exist inside it. "
            "Imported files move to processed/, refused ones to failed/ with the reason beside them.")
    if can_see_server_paths(user):
        return [Fact("Default import directory", current_app.config["IMPORT_DIR"], hint, is_path=True)]
    return [Fact("Default import directory", IMPORT_DIRECTORY_WORDS.capitalize() + " of this installation", hint)]
