"""Creating, editing, removing, restoring and deleting jobs, callable without HTTP.

The views turn a form into a `JobInput` (plain values as typed) and call these functions.
Every check collects its problems into `InvalidJob.errors`, keyed by the name of the form
input they belong to (`name`, `domain_id`, `plan-every`, `param-duration` ...), so that a
form can show each message next to its field. Nothing is written unless every check passes.
"""
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.auth import permissions
from webapp.auth.permissions import domains_for_new_jobs, sees_installation_jobs
from webapp.extensions import db
from webapp.guards import MAX_ID
from webapp.jobs import typepages
from webapp.jobtypes import registry
from webapp.mail_addresses import valid_recipients
from webapp.models import AuditEvent, Domain, Job, JobState, Scope
from webapp.models.audit import record
from webapp.models.types import utcnow
from webapp.scheduling import sync
from webapp.scheduling.plans import KINDS, PlanError, parse_plan, upcoming

log = logging.getLogger(__name__)

NAME_MAX = 120  # the column's length
DESCRIPTION_MAX = 2000
RECIPIENTS_MAX = 2000
PARAM_MAX = 2000  # a parameter's value as typed
PREVIEW_COUNT = 5
# Plans whose fire times count from an anchor set when the plan is saved.
ANCHORED = ("interval", "poll")
# The field a "no fire time left" message is shown next to, by plan kind.
_PLAN_MAIN_FIELD = {"interval": "every", "period": "start", "daily": "times", "cron": "expression",
                    "poll": "seconds"}
# What the form puts in front of a plan field's or a parameter's name.
PLAN_PREFIX, PARAM_PREFIX = "plan-", "param-"


class InvalidJob(ValueError):
    """The input is refused; errors maps form input name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class NotAllowed(Exception):
    """The action does not apply to the job in its present state (the message says why)."""


@dataclass(frozen=True)
class Edit:
    """One saved change of a job's settings, as the audit trail tells it."""

    actor: str
    at: datetime
    changes: list[tuple[str, str, str]]  # (setting's label, before, after) as text


class EditConflict(Exception):
    """The job was changed since the form was opened: nothing is saved. `edits` are the
    changes made meanwhile (oldest first); `yours` the (label, value) of each setting the
    refused save would have changed, for the user to apply again (None if it was invalid)."""

    def __init__(self, edits: list[Edit], yours: list[tuple[str, str]] | None):
        self.edits, self.yours = edits, yours
        super().__init__("; ".join(f"changed by {edit.actor} at {edit.at:%Y-%m-%d %H:%M}" for edit in edits)
                         or "changed since the form was opened")


@dataclass
class JobInput:
    """What a job form submits, as typed. Parameters are raw values by parameter name
    (blank ones left out so that their defaults apply); the plan is a plan dict without anchor."""

    name: str = ""
    description: str = ""
    job_type: str = ""
    scope: str = Scope.DOMAIN
    domain_id: str | int | None = None
    params: dict = field(default_factory=dict)
    plan: dict = field(default_factory=lambda: {"kind": "disabled"})
    report_enabled: bool = False
    report_recipients: str = ""
    # The job's version the form was opened at (Job.version): a save from an older one is
    # refused. None: no check (callers that read and write the job in one go).
    version: int | None = None


# --- choices a form offers ----------------------------------------------------------------

def creatable_types(user, job: Job | None = None) -> list[registry.JobType]:
    """The job types a job may have: the user-creatable ones the user may see, plus the job's own type."""
    types = [jt for jt in permissions.job_types_for(user) if jt.user_creatable]
    if job is not None and job.job_type not in {jt.key for jt in types}:
        own = job_type_or_none(job.job_type)
        if own is not None:
            types.append(own)
    return sorted(types, key=lambda jt: jt.label.lower())


def parse_id(value) -> int | None:
    """The id written as canonical ASCII digits ("12", not "012", "١٢" or "²") within what an
    id column holds (as the app's URL converter), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,9}", value) and int(value) <= MAX_ID:
        return int(value)
    return None


def job_type_or_none(key: str | None) -> registry.JobType | None:
    try:
        return registry.get(key) if key else None
    except registry.UnknownJobType:
        return None


def plan_kinds(job_type: registry.JobType | None) -> list[str]:
    """Plan kinds a job of this type may have: "automatic" only if the type declares a plan."""
    return [kind for kind in KINDS if kind != "automatic" or (job_type and job_type.automatic_plan)]


def domain_choices(user) -> list[tuple[int, str]]:
    """(id, "Study A › Site A1") for each domain the user may put a job in, sorted by that path."""
    allowed = db.session.scalars(domains_for_new_jobs(user)).all()
    parents = dict(db.session.execute(select(Domain.id, Domain.parent_id)).all())
    names = dict(db.session.execute(select(Domain.id, Domain.name)).all())

    def path(domain_id):
        parts, seen = [], set()
        while domain_id is not None and domain_id not in seen:
            seen.add(domain_id)
            parts.append(names[domain_id])
            domain_id = parents.get(domain_id)
        return " › ".join(reversed(parts))

    return sorted(((d.id, path(d.id)) for d in allowed), key=lambda choice: choice[1].lower())


# --- plans ----------------------------------------------------------------------------------

def check_plan(raw: dict, job_type: registry.JobType | None, *, now: datetime,
               previous: dict | None = None) -> dict:
    """The plan to store for `raw` (raises PlanError, keyed by plan field name).

    Interval and poll plans count from the moment they are saved (`now`). Saving a job again
    with the same interval keeps the anchor it had, so editing the description does not move
    the job's rhythm; a changed interval starts again from `now`."""
    kind = raw.get("kind")
    if kind not in plan_kinds(job_type):
        if kind == "automatic":
            raise PlanError({"kind": "This job type declares no automatic schedule."})
        raise PlanError({"kind": "Choose one of the listed schedule kinds."})
    automatic = job_type.automatic_plan if job_type else None
    stored = parse_plan(raw, automatic=automatic, now=now).to_dict()
    if kind in ANCHORED and previous and previous.get("anchor") and _without_anchor(previous) == _without_anchor(stored):
        kept = {**stored, "anchor": previous["anchor"]}
        try:
            if parse_plan(kept).to_dict() == kept:
                stored = kept
        except PlanError:
            pass  # a broken stored anchor: start again from now
    plan = parse_plan(stored, automatic=automatic)
    # As sync.first_fire: a plan saved now may fire now (an interval's first run).
    if kind != "disabled" and plan.next_after(now - timedelta(seconds=1), sync.timezone()) is None:
        raise PlanError({_PLAN_MAIN_FIELD.get(kind, "kind"):
                         "This schedule has no fire time left: the calendar ends with the year 9999."})
    return stored


def _without_anchor(plan: dict) -> dict:
    return {key: value for key, value in plan.items() if key != "anchor"}


@dataclass(frozen=True)
class Preview:
    description: str  # "every 12 hours"
    times: list[datetime]  # aware UTC


def preview(raw: dict, job_type: registry.JobType | None, *, previous: dict | None = None,
            now: datetime | None = None, count: int = PREVIEW_COUNT) -> Preview:
    """What the plan would do if it were saved now: its first `count` fire times (raises PlanError)."""
    now = (now or utcnow()).replace(microsecond=0)
    stored = check_plan(raw, job_type, now=now, previous=previous)
    plan = parse_plan(stored, automatic=job_type.automatic_plan if job_type else None)
    # As sync.first_fire: a plan saved now may fire now (an interval's first run).
    return Preview(plan.describe(), upcoming(plan, now - timedelta(seconds=1), sync.timezone(), count))


# --- the other fields -----------------------------------------------------------------------

def _check_params(job_type: registry.JobType, raw: dict, errors: dict) -> dict:
    too_long = {name for name, value in raw.items() if isinstance(value, str) and len(value) > PARAM_MAX}
    for name in too_long:
        errors[f"{PARAM_PREFIX}{name}" if name in job_type.params().fields else "params"] = \
            f"At most {PARAM_MAX} characters."
    if too_long:
        return {}
    try:
        loaded = job_type.load_params(raw)
    except registry.InvalidArguments as exc:
        for name, message in exc.errors.items():
            if message == "Missing data for required field.":
                message = "A value is required."
            errors[f"{PARAM_PREFIX}{name}" if name in job_type.params().fields else "params"] = message
        return {}
    return job_type.params().dump(loaded)  # JSON-safe values, defaults filled in


def _name_taken(name: str, job: Job | None) -> bool:
    query = select(Job.id).where(Job.deleted_at.is_(None), func.lower(Job.name) == name.lower())
    if job is not None:
        query = query.where(Job.id != job.id)
    return db.session.scalar(query.limit(1)) is not None


def _check_execution(user, data: JobInput, errors: dict) -> tuple[str, int | None]:
    if data.scope == Scope.INSTALLATION:
        if not sees_installation_jobs(user):
            errors["scope"] = "You may only create jobs that run by domain."
        return Scope.INSTALLATION, None
    if data.scope != Scope.DOMAIN:
        errors["scope"] = "Choose by domain or by installation."
        return Scope.DOMAIN, None
    domain_id = parse_id(data.domain_id)
    if domain_id is None:
        errors["domain_id"] = "Choose the domain the job runs in."
        return Scope.DOMAIN, None
    allowed = db.session.scalar(domains_for_new_jobs(user).where(Domain.id == domain_id))
    if allowed is None:
        # Also what a forged id of a domain the user may not see gets: nothing is revealed.
        errors["domain_id"] = "You cannot put a job in this domain; choose one of the listed domains."
        return Scope.DOMAIN, None
    return Scope.DOMAIN, domain_id


def check_name(typed: str | None, job: Job | None, errors: dict) -> str:
    """A job's name as stored (spaces collapsed); a problem goes into errors["name"]. Invisible
    formatting characters (a right-to-left override shows "evil" as "live") are refused, so a name
    reads the same in every list."""
    name = " ".join((typed or "").split())
    if not name:
        errors["name"] = "A name is required."
    elif len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."
    elif any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        errors["name"] = "A name may not hold invisible formatting characters (such as a right-to-left override)."
    elif _name_taken(name, job):
        errors["name"] = _name_taken_message(name)
    return name


def check(user, data: JobInput, job: Job | None = None, *, now: datetime | None = None) -> dict:
    """The settings to store for `data` (a new job, or an edit of `job`); raises InvalidJob
    with every problem found. System jobs keep the name, description, type and execution
    their job type declares, whatever is posted."""
    now = (now or utcnow()).replace(microsecond=0)
    errors: dict[str, str] = {}
    if job is not None and job.system:
        name, description = job.name, job.description
        job_type_key, scope, domain_id = job.job_type, job.scope, job.domain_id
        job_type = job_type_or_none(job_type_key)
    else:
        name = check_name(data.name, job, errors)
        description = (data.description or "").strip()
        if len(description) > DESCRIPTION_MAX:
            errors["description"] = f"At most {DESCRIPTION_MAX} characters."
        job_type_key = data.job_type
        job_type = job_type_or_none(job_type_key)
        if job_type is None or job_type.key not in {jt.key for jt in creatable_types(user, job)}:
            errors["job_type"] = "Choose one of the listed job types."
            job_type = None
        scope, domain_id = _check_execution(user, data, errors)
        if scope == Scope.INSTALLATION and typepages.needs_domain(job_type) and "scope" not in errors:
            errors["scope"] = (f"{job_type.label} jobs run in a domain (a study or site), not by installation: "
                               "choose By domain and the domain.")

    params = _check_params(job_type, data.params, errors) if job_type else {}
    check_with_domain = job_type.extra.get("check_with_domain") if job_type else None
    if check_with_domain and not any(key.startswith(PARAM_PREFIX) for key in errors) and "domain_id" not in errors:
        errors.update({f"{PARAM_PREFIX}{name}": message
                       for name, message in check_with_domain(params, domain_id).items()})
    try:
        plan = check_plan(data.plan, job_type, now=now, previous=job.plan if job is not None else None)
    except PlanError as exc:
        errors.update({f"{PLAN_PREFIX}{k}": v for k, v in exc.errors.items()})
        plan = None

    recipients = []
    if len(data.report_recipients or "") > RECIPIENTS_MAX:
        errors["report_recipients"] = f"At most {RECIPIENTS_MAX} characters."
    else:
        try:
            recipients = valid_recipients(data.report_recipients)
        except ValueError as exc:
            errors["report_recipients"] = str(exc)
    if data.report_enabled and not recipients and "report_recipients" not in errors:
        errors["report_recipients"] = "Give at least one address to send the report to."

    if errors:
        raise InvalidJob(errors)
    return dict(name=name, description=description, job_type=job_type_key, scope=scope,
                domain_id=domain_id, params=params, plan=plan, report_enabled=bool(data.report_enabled),
                report_recipients=", ".join(recipients))


SETTINGS = ("name", "description", "job_type", "scope", "domain_id", "params", "plan", "report_enabled",
            "report_recipients")


def settings_of(job: Job) -> dict:
    """The job's settings as a save would store them: parameters with their defaults filled in
    (a system job is created with none), so that an edit of something else does not record its
    parameters as changed."""
    settings = {key: getattr(job, key) for key in SETTINGS}
    settings["params"] = _with_defaults(job.params, job.job_type)
    return settings


def _for_audit(settings: dict) -> dict:
    """Settings as the audit trail keeps them: with the domain's name beside its id."""
    shown = dict(settings)
    if "domain_id" in shown:
        domain = db.session.get(Domain, shown["domain_id"]) if shown["domain_id"] else None
        shown["domain"] = domain.name if domain else None
    return shown


def _iso(moment):
    return moment.isoformat() if moment else None


# --- what changed, in words (for a refused save from a stale form) ---------------------------

SETTING_LABELS = {"name": "Name", "description": "Description", "job_type": "Job type", "scope": "Execution",
                  "domain_id": "Execution domain", "params": "Parameters", "plan": "Schedule",
                  "report_enabled": "Report", "report_recipients": "Recipients"}
SHOWN_EDITS = 10  # the most recent changes a refused save lists
_SHOWN_TEXT = 200


def setting_text(key: str, value, job_type_key: str | None = None) -> str:
    """A stored setting as a line of text: "every 6 hours", "Study A", "on" ..."""
    if value in (None, "", {}):
        return "—"
    if key == "plan":
        job_type = job_type_or_none(job_type_key)
        try:
            return parse_plan(value, automatic=job_type.automatic_plan if job_type else None).describe()
        except PlanError:
            return "invalid plan"
    if key == "params" and isinstance(value, dict):
        return ", ".join(f"{name}={item}" for name, item in value.items())
    if key == "domain_id":
        domain = db.session.get(Domain, value) if parse_id(value) else None
        return domain.name if domain else f"domain #{value}"
    if key == "job_type":
        job_type = job_type_or_none(value)
        return job_type.label if job_type else str(value)
    if key == "scope":
        return "by installation" if value == Scope.INSTALLATION else "by domain"
    if key == "report_enabled":
        return "on" if value else "off"
    text = str(value)
    return text if len(text) <= _SHOWN_TEXT else text[:_SHOWN_TEXT - 1] + "…"


def _edit_events_since(job: Job, version: int) -> list[AuditEvent]:
    """The "edit" audit records of the job after `version`, oldest first. Every version bump
    writes one, so they are the latest job.version - version of them."""
    count = max(job.version - version, 0)
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "job", AuditEvent.object_id == job.id,
                                 AuditEvent.action == "edit").order_by(AuditEvent.id.desc()).limit(count)).all()[::-1]


def _as_edit(event: AuditEvent, job: Job) -> Edit:
    before, after = event.before or {}, event.after or {}
    type_before, type_after = before.get("job_type", job.job_type), after.get("job_type", job.job_type)
    return Edit(actor=event.actor_name, at=event.at,
                changes=[(SETTING_LABELS[key], setting_text(key, before.get(key), type_before),
                          setting_text(key, after.get(key), type_after)) for key in SETTINGS if key in after])


def _differs(key: str, one, other) -> bool:
    if key == "plan" and isinstance(one, dict) and isinstance(other, dict):
        return _without_anchor(one) != _without_anchor(other)  # a fresh anchor is no change of the user's
    return one != other


def _with_defaults(params: dict, job_type_key: str) -> dict:
    """Stored parameters as a save would store them (defaults filled in), to compare with one."""
    job_type = job_type_or_none(job_type_key)
    try:
        return job_type.params().dump(job_type.load_params(params)) if job_type else params
    except registry.InvalidArguments:
        return params


def _conflict(user, job: Job, data: "JobInput", now: datetime) -> EditConflict:
    """What a save of `data` from a stale form is told: the changes made since the form was
    opened, and what the user changed on it (the settings then are the job's now, with those
    changes taken back)."""
    events = _edit_events_since(job, data.version)
    opened = settings_of(job)
    for event in reversed(events):
        opened.update({key: value for key, value in (event.before or {}).items() if key in opened})
    opened["params"] = _with_defaults(opened["params"], opened["job_type"])  # an older edit's before
    try:
        settings = check(user, data, job, now=now)
    except InvalidJob:
        yours = None
    else:
        yours = [(SETTING_LABELS[key], setting_text(key, settings[key], settings["job_type"]))
                 for key in SETTINGS if _differs(key, settings[key], opened[key])]
    return EditConflict([_as_edit(event, job) for event in events[-SHOWN_EDITS:]], yours)


# --- the actions ----------------------------------------------------------------------------

def _schedule(job: Job, now: datetime) -> None:
    """What sync.reschedule does, with the `now` the plan was checked with: an interval
    anchored at `now` then fires at `now`, however long the save took."""
    job.next_fire_at = sync.first_fire(job, now) if job.schedulable else None


def _place(job: Job) -> None:
    try:
        sync.place(job)
    except RedisError:
        # The database holds the next fire time; the scheduler's resync places it.
        log.warning("could not place the next occurrence job=%s; the next resync will", job.id)


def _name_taken_message(name: str) -> str:
    return f"A job named “{name}” already exists; choose another name."


def _write_or_name_taken(name: str, write) -> None:
    """flush or commit; a unique-name violation (another save took the name between the
    check and the write) becomes the same message as the check's."""
    try:
        write()
    except IntegrityError:
        db.session.rollback()
        raise InvalidJob({"name": _name_taken_message(name)}) from None


def create_job(user, data: JobInput, *, now: datetime | None = None) -> Job:
    """Save a new job, audit it and put its first occurrence in the scheduler."""
    now = (now or utcnow()).replace(microsecond=0)
    settings = check(user, data, now=now)
    job = Job(**settings, state=JobState.ACTIVE, system=False, created_by_id=getattr(user, "id", None))
    db.session.add(job)
    _schedule(job, now)
    _write_or_name_taken(settings["name"], db.session.flush)  # the audit record needs the job's id
    record("create", "job", job, actor=user, after={**_for_audit(settings), "state": job.state,
                                                    "next_fire_at": _iso(job.next_fire_at)})
    _write_or_name_taken(settings["name"], db.session.commit)
    _place(job)
    log.info("job created job=%s type=%s by=%s", job.id, job.job_type, getattr(user, "username", None))
    return job


def update_job(user, job: Job, data: JobInput, *, now: datetime | None = None) -> dict:
    """Save the changed settings of a job; returns {setting: (before, after)} of what changed
    (empty: nothing to save). Audited; rescheduled when its plan (or type) changed. Raises
    EditConflict if the job was saved since `data.version`, InvalidJob for refused input."""
    now = (now or utcnow()).replace(microsecond=0)
    job = _locked(job)  # no fire or other save of this job interleaves with the change
    try:
        if data.version is not None and data.version != job.version:
            raise _conflict(user, job, data, now)
        settings = check(user, data, job, now=now)
    except (EditConflict, InvalidJob):
        db.session.rollback()
        raise
    before = settings_of(job)
    changed = {key: (before[key], settings[key]) for key in SETTINGS if before[key] != settings[key]}
    if not changed:
        db.session.rollback()
        return {}
    for key, (_, value) in changed.items():
        setattr(job, key, value)
    job.version += 1  # under the job's lock; _edit_events_since counts on one "edit" record per version
    fire_before = job.next_fire_at
    replan = "plan" in changed or "job_type" in changed
    if replan:
        _schedule(job, now)
    audit_before = _for_audit({k: old for k, (old, _) in changed.items()})
    audit_after = _for_audit({k: new for k, (_, new) in changed.items()})
    if replan and fire_before != job.next_fire_at:
        audit_before["next_fire_at"], audit_after["next_fire_at"] = _iso(fire_before), _iso(job.next_fire_at)
    record("edit", "job", job, actor=user, before=audit_before, after=audit_after)
    _write_or_name_taken(settings["name"], db.session.commit)
    if replan:
        _place(job)
    return changed


def update_plan(user, job: Job, plan: dict, version: int | None, *, now: datetime | None = None) -> dict:
    """Save a new plan (as typed) for the job and keep its other settings: update_job, so the
    same checks, conflict rule (a save from a form opened before another save is refused),
    audit record and rescheduling apply."""
    data = JobInput(name=job.name, description=job.description, job_type=job.job_type, scope=job.scope,
                    domain_id=job.domain_id, params=dict(job.params or {}), plan=plan,
                    report_enabled=job.report_enabled, report_recipients=job.report_recipients, version=version)
    return update_job(user, job, data, now=now)


def _locked(job: Job) -> Job:
    Job.lock(job.id)
    db.session.refresh(job)
    return job


def remove_job(user, job: Job) -> None:
    """Take the job off its plan: it stays listed, with no next fire time. A run in progress
    goes on; the job can be restored."""
    job = _locked(job)
    if job.state != JobState.ACTIVE:
        db.session.rollback()
        raise NotAllowed(f"“{job.name}” is already {job.state}.")
    before = {"state": job.state, "next_fire_at": _iso(job.next_fire_at)}
    job.state = JobState.REMOVED
    job.next_fire_at = None
    record("remove", "job", job, actor=user, before=before, after={"state": job.state, "next_fire_at": None})
    db.session.commit()
    _place(job)  # takes its occurrence out of the scheduler


def restore_job(user, job: Job, *, now: datetime | None = None) -> None:
    """Put a removed job back on its plan; its next fire time is computed from now."""
    now = (now or utcnow()).replace(microsecond=0)
    job = _locked(job)
    if job.state != JobState.REMOVED:
        db.session.rollback()
        raise NotAllowed(f"Only a removed job can be restored; “{job.name}” is {job.state}.")
    job.state = JobState.ACTIVE
    try:
        _schedule(job, now)
    except (PlanError, registry.UnknownJobType) as exc:
        db.session.rollback()
        raise NotAllowed(f"“{job.name}” cannot be restored: its plan is invalid ({exc}). Edit it first.") \
            from None
    record("restore", "job", job, actor=user, before={"state": JobState.REMOVED, "next_fire_at": None},
           after={"state": job.state, "next_fire_at": _iso(job.next_fire_at)})
    db.session.commit()
    _place(job)


def delete_job(user, job: Job, *, now: datetime | None = None) -> None:
    """Delete the job: it leaves every list and frees its name. Its runs, their files and
    its audit trail stay. System jobs, declared in code, cannot be deleted."""
    now = now or utcnow()
    job = _locked(job)
    if job.system:
        db.session.rollback()
        raise NotAllowed(f"“{job.name}” is a system job and cannot be deleted; remove it to stop it running.")
    before = {**_for_audit(settings_of(job)), "state": job.state, "next_fire_at": _iso(job.next_fire_at)}
    job.deleted_at = now
    job.next_fire_at = None
    record("delete", "job", job, actor=user, before=before, after={"deleted_at": _iso(job.deleted_at)})
    db.session.commit()
    _place(job)
