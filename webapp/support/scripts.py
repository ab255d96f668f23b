"""Script jobs (SPEC 8): create, edit, archive and restore them, keep their script versions and
show the difference between two. Callable without HTTP: the support views turn a form into a
`ScriptInput` and call these functions.

A script job is a `Job` of type `support.script`, run by installation, on a poll plan; its script
lives in `ScriptVersion` rows (a save that changes the text adds one). Checks and messages follow
`webapp/jobs/editing.py` (and reuse its pieces): every problem is collected, keyed by the form
input it belongs to, and nothing is written unless all pass. Every change is audited with the
script's MD5 before and after, as SPEC 8 asks.
"""
import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from webapp.extensions import db
from webapp.jobs import editing
from webapp.jobs.editing import Edit, EditConflict, InvalidJob, NotAllowed
from webapp.jobtypes import registry
from webapp.jobtypes import script as script_type
from webapp.models import AuditEvent, Job, JobState, Role, Scope, User
from webapp.models.audit import record
from webapp.models.scripts import ScriptVersion, script_md5
from webapp.models.settings import get_setting
from webapp.models.types import utcnow
from webapp.scheduling.plans import PlanError

SCRIPT_MAX_BYTES = 1024 * 1024  # a script's UTF-8 text
NAME_MAX, DESCRIPTION_MAX = editing.NAME_MAX, editing.DESCRIPTION_MAX
KEY_MAX, VALUE_MAX, ROWS_MAX = script_type.CONFIG_KEY_MAX, script_type.CONFIG_VALUE_MAX, script_type.CONFIG_ROWS_MAX
VERSIONS_SHOWN = 200  # the latest versions the job page lists
DIFF_LINES_MAX = 5000  # lines of a difference shown; the rest is counted
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}  # control, format (zero-width, bidi), line breaks
_AUDITED_ACTIONS = ("create", "edit", "archive", "restore")  # each adds 1 to Job.version (but create)

__all__ = ["EditConflict", "InvalidJob", "NotAllowed", "ScriptInput", "create", "update", "archive", "restore"]


@dataclass
class ScriptInput:
    """What the script form submits, as typed. `config` holds the rows in form order, blank rows
    (no key, no value) included; problems of row i are keyed `config-<i>-key/value`."""

    name: str = ""
    description: str = ""
    script: str = ""
    poll_seconds: str | int | None = None
    config: list[tuple[str, str]] = field(default_factory=list)
    run_as_id: str | int | None = None
    archived: bool = False
    time_limit: str | int | None = None
    version: int | None = None  # Job.version the form was opened at; None: no check


def job_type() -> registry.JobType:
    return registry.get(script_type.KEY)


def scripts_query():
    """Live script jobs (the support views check who may see them, once, before any view)."""
    return Job.live().where(Job.job_type == script_type.KEY)


def get_script_job(job_id: int) -> Job | None:
    return db.session.scalar(scripts_query().where(Job.id == job_id))


# --- checks ---------------------------------------------------------------------------------

def compile_problem(text: str) -> str | None:
    """What stops the script from compiling, with its line and column, or None. Compiled the way
    the runner will (`compile(text, "<script>", "exec")`) so a syntax error is told at save."""
    try:
        compile(text, "<script>", "exec")
    except SyntaxError as exc:
        where = f"Line {exc.lineno}" if exc.lineno else "The script"
        if exc.lineno and exc.offset:
            where += f", column {exc.offset}"
        return f"{where}: {exc.msg}."
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:  # nested too deep, a NUL
        return f"The script cannot be compiled: {exc or type(exc).__name__}."
    return None


def _check_script(text: str, errors: dict) -> str:
    if not text.strip():
        errors["script"] = "A script is required."
    elif len(text.encode("utf-8", "surrogatepass")) > SCRIPT_MAX_BYTES:
        errors["script"] = f"At most {SCRIPT_MAX_BYTES // 1024} KiB of text."
    else:
        problem = compile_problem(text)
        if problem:
            errors["script"] = problem
    return text


def _check_config(rows: list[tuple[str, str]], errors: dict) -> dict[str, str]:
    """The configuration as key -> value; keys unique and not empty, values may be empty. Row i
    of `rows` is row i+1 on the form, blank rows (no key, no value) included and left out here, so
    a message's row number is the one the user sees. Two keys that differ only in case or in
    width ("Limit", "ｌｉｍｉｔ", "limit") are one key typed twice, and a key may not hold an
    invisible character: keys that look alike would read as one and hold two values."""
    filled = [(index, (key or "").strip(), value or "") for index, (key, value) in enumerate(rows)
              if (key or "").strip() or value]
    if len(filled) > ROWS_MAX:
        errors["config"] = f"At most {ROWS_MAX} configuration rows."
        return {}
    config, first_row = {}, {}
    for index, key, value in filled:
        same = unicodedata.normalize("NFKC", key).casefold()
        if not key:
            errors[f"config-{index}-key"] = "A key is required (or empty the value to drop the row)."
        elif len(key) > KEY_MAX:
            errors[f"config-{index}-key"] = f"At most {KEY_MAX} characters."
        elif any(unicodedata.category(char) in _INVISIBLE for char in key):
            errors[f"config-{index}-key"] = "A key may not hold invisible or control characters."
        elif same in first_row:
            row, earlier = first_row[same]
            errors[f"config-{index}-key"] = (f"“{key}” is already the key of row {row + 1}." if key == earlier else
                                             f"“{key}” is the key of row {row + 1} (“{earlier}”) in another case "
                                             f"or width: use one key.")
        else:
            first_row[same] = (index, key)
            config[key] = value
        if len(value) > VALUE_MAX:
            errors[f"config-{index}-value"] = f"At most {VALUE_MAX} characters."
    return config


def _whole(value) -> int | None:
    """A whole number typed in a field ("12"), None if blank; ValueError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return int(value.strip())
    raise ValueError(value)


def time_limit_max() -> int:
    """The most a job's own time limit may be: the `script_time_limit` setting."""
    try:
        return max(1, int(get_setting("script_time_limit")))
    except (TypeError, ValueError):
        return script_type.TIME_LIMIT_MAX


def _check_time_limit(value, errors: dict) -> int | None:
    most = time_limit_max()
    try:
        seconds = _whole(value)
    except ValueError:
        errors["time_limit"] = "Must be a whole number of seconds."
        return None
    if seconds is not None and not 1 <= seconds <= most:
        errors["time_limit"] = f"Must be between 1 and {most} seconds (the time limit setting)."
    return seconds


def run_as_choices() -> list[User]:
    """The users a script may run as: active ones, system accounts first, then by name."""
    return db.session.scalars(select(User).where(User.active.is_(True))
                              .order_by((User.role != Role.SYSTEM), User.username)).all()


def _check_run_as(value, errors: dict) -> int | None:
    if value in (None, ""):
        return None
    user_id = editing.parse_id(value)
    user = db.session.get(User, user_id) if user_id else None
    if user is None or not user.active:
        errors["run_as_id"] = "Choose one of the listed users (active accounts only)."
        return None
    return user.id


def check(data: ScriptInput, job: Job | None = None, *, now: datetime) -> dict:
    """The settings to store for `data` (a new job, or an edit of `job`), with the script as
    `script`; raises InvalidJob with every problem found."""
    errors: dict[str, str] = {}
    name = editing.check_name(data.name, job, errors)
    description = (data.description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = f"At most {DESCRIPTION_MAX} characters."
    script = _check_script(data.script or "", errors)
    config = _check_config(data.config, errors)
    time_limit = _check_time_limit(data.time_limit, errors)
    run_as_id = _check_run_as(data.run_as_id, errors)
    try:
        plan = editing.check_plan({"kind": "poll", "seconds": data.poll_seconds}, job_type(), now=now,
                                  previous=job.plan if job is not None else None)
    except PlanError as exc:
        errors["poll_seconds"] = " ".join(exc.errors.values())
        plan = None
    params = {}
    if not any(key.startswith("config") or key == "time_limit" for key in errors):
        try:
            params = job_type().params().dump(job_type().load_params({"config": config, "time_limit": time_limit}))
        except registry.InvalidArguments as exc:  # the schema's own bounds: the checks above say the same
            errors.update({("config" if key == "config" else "time_limit"): message
                           for key, message in exc.errors.items()})
    if errors:
        raise InvalidJob(errors)
    return dict(name=name, description=description, plan=plan, params=params, run_as_id=run_as_id,
                state=JobState.ARCHIVED if data.archived else JobState.ACTIVE, script=script)


# --- what the audit trail keeps -------------------------------------------------------------

SETTINGS = ("name", "description", "plan", "params", "run_as_id", "state")


def settings_of(job: Job) -> dict:
    return {key: getattr(job, key) for key in SETTINGS}


def _shown(settings: dict) -> dict:
    """Settings as an audit record keeps them: the run-as user's name beside the id."""
    shown = dict(settings)
    if "run_as_id" in shown:
        user = db.session.get(User, shown["run_as_id"]) if shown["run_as_id"] else None
        shown["run_as"] = user.username if user else None
    return shown


# --- versions -------------------------------------------------------------------------------

def _add_version(job: Job, text: str, user, number: int) -> ScriptVersion:
    version = ScriptVersion(job_id=job.id, number=number, script=text, md5=script_md5(text),
                            saved_by_id=getattr(user, "id", None),
                            saved_by_name=(getattr(user, "username", None) or "system")[:80])
    db.session.add(version)
    return version


def versions(job_id: int, limit: int = VERSIONS_SHOWN) -> list[ScriptVersion]:
    """The job's latest versions, newest first."""
    return db.session.scalars(select(ScriptVersion).where(ScriptVersion.job_id == job_id)
                              .order_by(ScriptVersion.number.desc()).limit(limit)).all()


def version_or_none(job_id: int, number) -> ScriptVersion | None:
    number = editing.parse_id(number)
    if number is None:
        return None
    return db.session.scalar(select(ScriptVersion).where(ScriptVersion.job_id == job_id,
                                                         ScriptVersion.number == number))


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "head" (--- / +++), "hunk" (@@), "add", "del", "same"
    text: str


@dataclass(frozen=True)
class Diff:
    a: ScriptVersion
    b: ScriptVersion
    lines: list[DiffLine]
    left_out: int  # lines past DIFF_LINES_MAX

    @property
    def same(self) -> bool:
        return not self.lines


def diff(a: ScriptVersion, b: ScriptVersion, limit: int = DIFF_LINES_MAX) -> Diff:
    """The unified difference from version a to version b (difflib), each line marked."""
    out, total = [], 0
    for line in difflib.unified_diff(a.script.splitlines(), b.script.splitlines(),
                                     fromfile=f"version {a.number} ({a.md5})",
                                     tofile=f"version {b.number} ({b.md5})", lineterm=""):
        total += 1
        if total > limit:
            continue
        if line.startswith(("---", "+++")) and len(out) < 2:
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "same")
        out.append(DiffLine(kind, line))
    return Diff(a, b, out, max(0, total - limit))


# --- the actions ----------------------------------------------------------------------------

def create(user, data: ScriptInput, *, now: datetime | None = None) -> Job:
    """Save a new script job with version 1 of its script, audit it and put its first
    occurrence in the scheduler at once (unless it is saved archived)."""
    now = (now or utcnow()).replace(microsecond=0)
    settings = check(data, now=now)
    text = settings.pop("script")
    job = Job(**settings, job_type=script_type.KEY, scope=Scope.INSTALLATION, domain_id=None, system=False,
              created_by_id=getattr(user, "id", None))
    db.session.add(job)
    editing._schedule(job, now)
    editing._write_or_name_taken(settings["name"], db.session.flush)  # the version needs the job's id
    version = _add_version(job, text, user, 1)
    record("create", "job", job, actor=user, before={"md5": None},
           after={**_shown(settings), "md5": version.md5, "next_fire_at": editing._iso(job.next_fire_at)})
    editing._write_or_name_taken(settings["name"], db.session.commit)
    editing._place(job)
    return job


def update(user, job: Job, data: ScriptInput, *, now: datetime | None = None) -> dict:
    """Save the changed settings and script of a script job; returns {setting: (before, after)}
    of what changed (`script` among them when the text did; empty: nothing saved). A changed
    script adds a version. Raises EditConflict when the job was saved since `data.version`
    (nothing is saved), InvalidJob for refused input."""
    now = (now or utcnow()).replace(microsecond=0)
    job = editing._locked(job)
    try:
        if data.version is not None and data.version != job.version:
            raise conflict(job, data.version)
        settings = check(data, job, now=now)
    except (EditConflict, InvalidJob):
        db.session.rollback()
        raise
    text = settings.pop("script")
    current = ScriptVersion.current(job.id)
    before = settings_of(job)
    changed = {key: (before[key], settings[key]) for key in SETTINGS if before[key] != settings[key]}
    if current is None or current.script != text:
        changed["script"] = (current.script if current else None, text)
    if not changed:
        db.session.rollback()
        return {}
    md5_before = current.md5 if current else None
    md5_after = md5_before
    if "script" in changed:
        md5_after = _add_version(job, text, user, (current.number if current else 0) + 1).md5
    for key in SETTINGS:
        if key in changed:
            setattr(job, key, settings[key])
    job.version += 1  # under the job's lock: one audit record per version (conflict() counts on it)
    fire_before = job.next_fire_at
    if "plan" in changed or "state" in changed:
        editing._schedule(job, now)
    audit_before = _shown({key: old for key, (old, _) in changed.items() if key != "script"})
    audit_after = _shown({key: new for key, (_, new) in changed.items() if key != "script"})
    if fire_before != job.next_fire_at:
        audit_before["next_fire_at"] = editing._iso(fire_before)
        audit_after["next_fire_at"] = editing._iso(job.next_fire_at)
    audit_before["md5"], audit_after["md5"] = md5_before, md5_after
    action = {JobState.ARCHIVED: "archive", JobState.ACTIVE: "restore"}.get(job.state) \
        if set(changed) == {"state"} else "edit"
    record(action, "job", job, actor=user, before=audit_before, after=audit_after)
    editing._write_or_name_taken(settings["name"], db.session.commit)
    editing._place(job)
    return changed


def _set_state(user, job: Job, state: str, *, now: datetime | None = None) -> None:
    """Archive or restore: off the schedule (its occurrence taken out of the scheduler at once),
    or back on its poll interval from now. Audited with the script's MD5, which stays."""
    now = (now or utcnow()).replace(microsecond=0)
    job = editing._locked(job)
    if job.state == state:
        db.session.rollback()
        raise NotAllowed(f"“{job.name}” is already {state}.")
    before = {"state": job.state, "next_fire_at": editing._iso(job.next_fire_at)}
    job.state = state
    try:
        editing._schedule(job, now)
    except (PlanError, registry.UnknownJobType) as exc:
        db.session.rollback()
        raise NotAllowed(f"“{job.name}” cannot be restored: its poll interval is invalid ({exc}). Edit it.") \
            from None
    job.version += 1  # an open edit form must not silently undo this
    current = ScriptVersion.current(job.id)
    md5 = current.md5 if current else None
    after = {"state": job.state, "next_fire_at": editing._iso(job.next_fire_at), "md5": md5}
    record("archive" if state == JobState.ARCHIVED else "restore", "job", job, actor=user,
           before={**before, "md5": md5}, after=after)
    db.session.commit()
    editing._place(job)


def archive(user, job: Job, *, now: datetime | None = None) -> None:
    _set_state(user, job, JobState.ARCHIVED, now=now)


def restore(user, job: Job, *, now: datetime | None = None) -> None:
    _set_state(user, job, JobState.ACTIVE, now=now)


def conflict(job: Job, version: int) -> EditConflict:
    """What a save from a form opened at `version` is told: each change saved since (who, when,
    what), from the audit records those saves wrote."""
    from webapp.audit.diff import changes

    count = max(job.version - version, 0)
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "job", AuditEvent.object_id == job.id,
                                 AuditEvent.action.in_(_AUDITED_ACTIONS))
        .order_by(AuditEvent.id.desc()).limit(min(count, editing.SHOWN_EDITS))).all()[::-1]
    edits = [Edit(actor=event.actor_name, at=event.at,
                  changes=[(change.field, change.before or "—", change.after or "—")
                           for change in changes(event.before, event.after)]) for event in events]
    return EditConflict(edits, None)
