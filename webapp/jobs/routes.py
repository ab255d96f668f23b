"""The jobs list: find, filter by status, view by job type, sort, and act on many jobs at once
(the job page is in page.py)."""
from __future__ import annotations  # the list view is named `list`

import logging
from dataclasses import dataclass, field

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup
from sqlalchemy import select

from webapp import presenters
from webapp.auth.permissions import hidden_job_types, jobs_query
from webapp.execution import dispatch
from webapp.extensions import db
from webapp.forms import ConfirmForm
from webapp.jobs import columns as job_columns
from webapp.jobs import editing, queries, typepages
from webapp.jobs.finding import FIND_MAX
from webapp.jobtypes import registry
from webapp.models import Job, Run, Trigger
from webapp.models.runs import ACTIVE_STATUSES, STATUS_LABELS
from webapp.models.types import utcnow
from webapp.pagination import paginate
from webapp.runs.reads import unread_run_ids
from webapp.scheduling.sync import timezone

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/jobs")

STATUS_FILTERS = [(status, STATUS_LABELS.get(status, "Never run")) for status in queries.STATUS_FILTERS]
TYPE_KEY_MAX = 80  # the column's length
LINKED_RUNS = 10  # new runs a bulk "Run now" answer links one by one (the rest: the executions page)
REFRESH_AHEAD = 3600  # seconds: a next fire within this wakes the table when it is due
NAMED_JOBS = 10  # jobs a bulk answer names (a flash message lives in the session cookie)


@bp.before_request
@login_required
def _signed_in():
    """Every jobs page needs a signed-in user."""


@bp.context_processor
def _presenters():
    return {"present": presenters}


@dataclass
class ListState:
    """What the list shows, all of it in the URL: find text, status toggles, type view, sort, page."""

    find: str = ""
    statuses: list = field(default_factory=list)
    job_type: str = ""

    @classmethod
    def from_args(cls, args) -> "ListState":
        wanted = set(args.getlist("status"))
        return cls(find=args.get("q", "").strip()[:FIND_MAX],
                   statuses=[status for status in queries.STATUS_FILTERS if status in wanted],
                   job_type=args.get("type", "").strip()[:TYPE_KEY_MAX])

    def args(self) -> dict:
        """The filters as URL arguments (the pager adds the sort and the page)."""
        return {key: value for key, value in (("q", self.find), ("status", self.statuses), ("type", self.job_type))
                if value}

    def url(self, current=None, **changes) -> str:
        """The list's URL with this state and the sort of the `current` page, `changes` applied
        (without a page number: a new sort or filter starts at page 1)."""
        args = {**self.args(), "sort": current.sort if current else None,
                "dir": current.direction if current else None, **changes}
        return url_for("jobs.list", **{key: value for key, value in args.items() if value})


@bp.route("/")
def list():
    """The jobs the user may see, with their latest status, log and fire times; found, filtered and sorted."""
    state = ListState.from_args(request.args)
    zone = timezone()
    found = queries.list_query(current_user, state.find, state.statuses, zone=zone,
                               today=utcnow().astimezone(zone).date())
    counts = queries.type_counts(found)
    # A type hidden from the user is shown as one that is not installed: its columns and label
    # would tell that it exists.
    hidden = hidden_job_types(current_user)
    columns = typepages.columns_of(state.job_type) if state.job_type not in hidden else job_columns.for_type(None)
    page = paginate(queries.of_type(found, state.job_type), queries.job_sorts(current_user, columns), "name",
                    tiebreak=Job.id)
    latest = queries.latest_runs([job.id for job in page.items])
    context = dict(page=page, latest=latest, unread=unread_run_ids(current_user, latest.values()),
                   state=state, tabs=_tabs(state, counts, hidden), columns=columns, form=ConfirmForm(),
                   cells=job_columns.cells(columns, page.items), view=_view(state.job_type),
                   status_filters=STATUS_FILTERS,
                   ticked={editing.parse_id(i) for i in request.args.getlist("job_id")} - {None},
                   active=any(run.status in ACTIVE_STATUSES for run in latest.values()),
                   due_in=_seconds_to_next_fire(page.items))
    if request.htmx and request.htmx.target == "jobs-table":
        return render_template("jobs/_table.html", **context)
    return render_template("jobs/list.html", **context)


@dataclass(frozen=True)
class View:
    """What the page around the table says for the view shown: its heading, its New button
    (None: the type cannot be created here) and what the find box matches."""

    title: str = "Jobs"
    new_label: str = "New job"
    new_url: str | None = None
    plan_label: str = "Plan"
    find_placeholder: str = "Name, type, domain, dataset, date, 06:00"
    find_hint: str = ("Matches name, description, domain, job type and dataset, and previous or next fire times "
                      "typed as a date (2026-11-22) or a time (06:00).")
    missing: str = ""  # the page's type is not installed


def _view(key: str) -> View:
    page = typepages.page_of(key)
    if page is None:
        return View(new_url=url_for("jobs.new"))
    creatable = key in {jt.key for jt in editing.creatable_types(current_user)}
    missing = "" if registry.is_known(key) else \
        f"No job type for {page.title.lower()} is installed on this server, so none can be created yet."
    return View(title=page.title, new_label=page.new_label, new_url=url_for("jobs.new", type=key) if creatable else None,
                plan_label=page.plan_label, find_placeholder=page.find_placeholder, find_hint=page.find_hint,
                missing=missing)


def _seconds_to_next_fire(jobs) -> int | None:
    """Seconds until the first of the jobs' next fires, if within the hour: the table refreshes
    itself then, to show the run that fire starts (and while it is active, every few seconds)."""
    now = utcnow()
    waits = [(job.next_fire_at - now).total_seconds() for job in jobs if job.next_fire_at is not None]
    waits = [wait for wait in waits if 0 <= wait <= REFRESH_AHEAD]
    return int(min(waits)) + 2 if waits else None


def _tabs(state: ListState, counts: dict, hidden: set) -> list[tuple[str, str, int]]:
    """(type key, label, jobs) of the views: All, then each type present by label (and the one
    asked for, even when nothing is found of it, by its key alone if it is hidden from the user)."""
    keys = set(counts) | ({state.job_type} if state.job_type else set())
    labelled = sorted((key if key in hidden else _tab_label(key), key) for key in keys)
    return [("", "All", sum(counts.values()))] + [(key, label, counts.get(key, 0)) for label, key in labelled]


def _tab_label(key: str) -> str:
    if registry.is_known(key):
        return registry.get(key).label
    page = typepages.page_of(key)
    return page.title if page is not None else key


def _ticked() -> tuple[list[Job], int]:
    """The ticked jobs the user may see, and how many ticked ids name no such job (deleted, or
    of a domain the user may not see: both answer alike)."""
    ids = {editing.parse_id(value) for value in request.form.getlist("job_id")} - {None}
    jobs = db.session.scalars(jobs_query(current_user).where(Job.id.in_(ids)).order_by(Job.name)).all() \
        if ids else []
    return jobs, len(ids) - len(jobs)


def _answer(jobs, missing: int, verb: str):
    """The flash messages every bulk action shares: nothing ticked, and ticked jobs that are gone."""
    if not jobs and not missing:
        flash(f"Tick at least one job to {verb}.", "error")
    if missing:
        flash(f"{missing} of the ticked jobs no longer exist{'s' if missing == 1 else ''}: nothing was done "
              f"to {'it' if missing == 1 else 'them'}.", "error")


def _refusals(messages: list[str]):
    """Why ticked jobs were refused, the first few by name (a flash lives in the session cookie)."""
    for message in messages[:NAMED_JOBS]:
        flash(message, "error")
    if len(messages) > NAMED_JOBS:
        flash(f"… and {len(messages) - NAMED_JOBS} more jobs were refused.", "error")


def _back():
    """To the list as the user left it (its URL holds the sort, filters and page)."""
    referrer = request.referrer or ""
    return redirect(referrer if referrer.startswith(request.host_url) else url_for("jobs.list"))


@bp.route("/run", methods=["POST"])
def run_selected():
    """Run now every job ticked on the list; the answer links each new run."""
    jobs, missing = _ticked()
    _answer(jobs, missing, "run")
    started, refused = dispatch.request_runs(jobs, trigger=Trigger.HAND, user=current_user) if jobs else ([], [])
    if started:
        flash(_started_message(started), "success")
    _refusals(refused)
    return _back()


def _started_message(run_ids: list[int]) -> Markup:
    linked = run_ids[:LINKED_RUNS]
    names = dict(db.session.execute(select(Run.id, Job.name).join(Run.job).where(Run.id.in_(linked))).all())
    links = Markup(", ").join(Markup('<a href="{}">#{}</a> {}').format(url_for("runs.detail", run_id=run_id), run_id,
                                                                      names.get(run_id, ""))
                              for run_id in linked)
    more = len(run_ids) - LINKED_RUNS
    tail = Markup(' and <a href="{}">{} more</a>').format(url_for("executions.list"), more) if more > 0 else ""
    return Markup("Queued {} run{}: {}{}.").format(len(run_ids), "" if len(run_ids) == 1 else "s", links, tail)


@bp.route("/remove", methods=["POST"])
def remove_selected():
    """Take every ticked job off its plan (they stay listed and can be restored)."""
    return _each_ticked(editing.remove_job, "remove", "Removed")


@bp.route("/restore", methods=["POST"])
def restore_selected():
    """Put every ticked removed job back on its plan."""
    return _each_ticked(editing.restore_job, "restore", "Restored")


def _each_ticked(action, verb: str, done: str):
    jobs, missing = _ticked()
    _answer(jobs, missing, verb)
    names, refused = [], []
    for job in jobs:
        name = job.name  # read now: a refusal rolls the session back and expires the job
        try:
            action(current_user, job)
            names.append(name)
        except editing.NotAllowed as exc:
            refused.append(str(exc))
    if names:
        more = f" and {len(names) - NAMED_JOBS} more" if len(names) > NAMED_JOBS else ""
        flash(f"{done} {len(names)} job{'s' if len(names) != 1 else ''}: "
              + ", ".join(f"“{name}”" for name in names[:NAMED_JOBS]) + more + ".", "success")
    _refusals(refused)
    log.info("bulk action=%s user=%s done=%s refused=%s missing=%s", verb, current_user.id, len(names), len(refused),
             missing)
    return _back()
