"""The queues page as queries, callable without HTTP.

A queue's panel has three lists, each read through permissions.runs_query / jobs_query (a
domain administrator's lists hold their domains' entries only; the others are a count):
- running: runs in progress of the job types on the queue, with their live progress (Redis,
  one pipeline for the page; the database's last saved progress when Redis does not answer);
- waiting: queued runs, those handed to RQ with their position there (one LRANGE of the queue)
  and those held in the database, behind an active run of the same job or, on a serial queue,
  for their turn (one query for the page); on a paused queue, all wait for the resume;
- planned: the next fire of each active job of those types (jobs.next_fire_at).
Each panel says its queue's state (statuses: paused by whom, when, why; serial; pause on failure).
Each list is sorted, filtered and paged in the database (webapp/pagination.py); what a page
shows of its rows takes a fixed number of statements, whatever the number of rows."""
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue
from rq import Worker as RQWorker
from sqlalchemy import false, func, select, true
from sqlalchemy.orm import aliased, contains_eager

from webapp.auth.permissions import (hidden_job_types, hidden_queues, job_filter, jobs_query, runs_query,
                                     visible_domain_ids)
from webapp.execution import livelog
from webapp.execution import queues as engine
from webapp.execution.queues import UnknownQueue
from webapp.execution.rqjobs import RUN_PREFIX, run_id_of
from webapp.extensions import db, redis_client
from webapp.jobtypes import registry
from webapp.models import Domain, Job, JobState, QueueState, Run, RunStatus
from webapp.models.runs import ACTIVE_STATUSES
from webapp.models.types import utcnow
from webapp.pagination import Page, page_items, paginate
from webapp.runs.present import hide_paths, shows_server_paths
from webapp.runs.waiting import Waiting

LISTS = ("running", "waiting", "planned")
PER_PAGE = 10
TEXT_MAX = 100

# Each list's columns: key -> (label, sort expression). Every column sorts.
_POSITION = Run.enqueued_at.is_(None)  # handed to RQ first (false), then held back; ix_runs_status_waiting
COLUMNS = {
    "running": {"run": ("Run", Run.id), "job": ("Job", Job.name), "domain": ("Domain", Domain.name),
                "started": ("Started", Run.started_at), "progress": ("Progress", Run.progress),
                "worker": ("Worker", Run.worker_name)},
    "waiting": {"position": ("Position", _POSITION), "run": ("Run", Run.id), "job": ("Job", Job.name),
                "domain": ("Domain", Domain.name), "queued": ("Queued", Run.created_at),
                "waits": ("Waits for", Run.enqueued_at)},
    "planned": {"job": ("Job", Job.name), "domain": ("Domain", Domain.name), "type": ("Job type", Job.job_type),
                "next": ("Fires at", Job.next_fire_at)},
}
DEFAULT_SORT = {"running": "started", "waiting": "position", "planned": "next"}
# What a waiting run waits for, as the "Waits for" filter offers it. Which one applies depends on
# the queue: all of a paused queue's runs wait for the resume; on a serial queue a run held in
# the database waits for its turn; elsewhere for the run of its job ahead of it. A run handed to
# RQ waits for a free worker (on a paused queue, for the resume first).
WAITS_CHOICES = (("paused", "The queue is paused"), ("serial", "Its turn on the serial queue"),
                 ("run", "A run of the same job"), ("worker", "A free worker"))
POSITION_CHOICES = (("worker", "In the queue"), ("run", "Held back"))


@dataclass
class ListState:
    """One list's sort, page and column filters as the URL gives them; `problems` says what was
    left out (never an error page)."""
    queue: str
    kind: str
    filters: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    def as_args(self) -> dict:
        args = {"queue": self.queue, "list": self.kind}
        args.update({f"f_{key}": value for key, value in self.filters.items() if value})
        return args

    @property
    def active(self) -> bool:
        return any(self.filters.values())

    @property
    def target(self) -> str:
        return f"q-{self.queue}-{self.kind}"


def parse_state(queue: str, kind: str, args) -> ListState:
    state = ListState(queue, kind)
    for key in COLUMNS[kind]:
        value = " ".join(str(args.get(f"f_{key}", "")).split())[:TEXT_MAX]
        state.filters[key] = value
    return state


def _day_range(text: str, state: ListState, label: str):
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        state.problems.append(f"{label}: “{text[:40]}” is not a day (year-month-day, such as 2026-11-22): ignored.")
        return None
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    start = datetime.combine(day, time(), zone).astimezone(timezone.utc)
    return start, start + timedelta(days=1)


def _number(text: str, state: ListState, label: str, high: int) -> int | None:
    digits = text.lstrip("#")
    if digits.isdigit() and len(digits) <= 10 and int(digits) <= high:
        return int(digits)
    state.problems.append(f"{label}: “{text[:40]}” is not a number from 0 to {high:,}: ignored.")
    return None


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _waits_for(choice: str, mode: str):
    """The waiting runs of a queue in `mode` (see queue_mode) that wait for `choice`, as a condition."""
    if mode == "paused":
        return true() if choice == "paused" else false()
    held = Run.enqueued_at.is_(None)
    return {"worker": Run.enqueued_at.isnot(None), "serial": held if mode == "serial" else false(),
            "run": held if mode == "plain" else false()}.get(choice, false())


def _filtered(query, state: ListState, mode: str = "plain"):
    """Apply the list's column filters; a value that cannot apply is named in state.problems."""
    for key, text in state.filters.items():
        if not text:
            continue
        label = COLUMNS[state.kind][key][0]
        if key == "job":
            query = query.where(Job.name.ilike(_like(text), escape="\\"))
        elif key == "domain":
            installation = "installation".startswith(text.lower())
            match = Domain.name.ilike(_like(text), escape="\\")
            query = query.where(match | Job.domain_id.is_(None)) if installation else query.where(match)
        elif key == "type":
            keys = [jt.key for jt in registry.all_types() if text.lower() in (jt.key + " " + jt.label).lower()]
            query = query.where(Job.job_type.in_(keys))
        elif key == "worker":
            query = query.where(Run.worker_name.ilike(_like(text), escape="\\"))
        elif key == "run":
            number = _number(text, state, label, 2**31 - 1)
            if number is not None:
                query = query.where(Run.id == number)
        elif key == "progress":
            number = _number(text.rstrip("% "), state, "Progress (at least, in %)", 100)
            if number is not None:
                query = query.where(Run.progress >= number)
        elif key in ("started", "queued", "next"):
            span = _day_range(text, state, label)
            if span is not None:
                column = COLUMNS[state.kind][key][1]
                query = query.where(column >= span[0], column < span[1])
        elif key == "position":
            if text not in dict(POSITION_CHOICES):
                state.problems.append("Position: pick in the queue or held back: ignored.")
            else:
                query = query.where(Run.enqueued_at.isnot(None) if text == "worker" else Run.enqueued_at.is_(None))
        elif key == "waits":
            if text not in dict(WAITS_CHOICES):
                state.problems.append("Waits for: pick one of the reasons offered: ignored.")
                state.filters[key] = ""
            else:
                query = query.where(_waits_for(text, mode))
    return query


def _runs_on(user, queue: str, status):
    return (runs_query(user).outerjoin(Job.domain)
            .where(Job.job_type.in_(engine.types_on(queue)), Run.status == status)
            .options(contains_eager(Run.job).contains_eager(Job.domain)))


def _planned_on(user, queue: str):
    return (jobs_query(user).outerjoin(Job.domain)
            .where(Job.job_type.in_(engine.types_on(queue)), Job.state == JobState.ACTIVE,
                   Job.next_fire_at.isnot(None))
            .options(contains_eager(Job.domain)))


def _base(user, state: ListState):
    if state.kind == "planned":
        return _planned_on(user, state.queue)
    return _runs_on(user, state.queue, RunStatus.IN_PROGRESS if state.kind == "running" else RunStatus.QUEUED)


def _sees_all(user) -> bool:
    return visible_domain_ids(user) is None and not hidden_job_types(user)


def _others(user, state: ListState, visible_total_unfiltered, everyone: int | None = None) -> int:
    """Entries of this list the user may not see (other domains): a count only. `everyone`: the
    list's entries for everyone, when the caller counted them already."""
    if _sees_all(user):
        return 0
    if everyone is None:
        everyone = _everyone_counts([state.queue], {state.kind}).get((state.queue, state.kind), 0)
    return max(0, everyone - visible_total_unfiltered)


@dataclass
class ListView:
    state: ListState
    page: object
    columns: dict
    others: int = 0
    live: dict = field(default_factory=dict)  # running: run id -> (percent, message)
    waits: dict = field(default_factory=dict)  # waiting: run id -> Waiting
    redis_down: bool = False
    # The choices of the waiting list's two select filters (class attributes, not fields).
    waits_choices = WAITS_CHOICES
    position_choices = POSITION_CHOICES


def list_view(user, state: ListState, args_apply: bool, mode: str = "plain", everyone: int | None = None) -> ListView:
    """One list, sorted/filtered/paged as the request says if `args_apply`, else its first page.
    `mode` is the queue's (queue_mode): what its waiting runs wait for. `everyone`: the number of
    the list's entries for everyone, when the caller counted them (`_everyone_counts`)."""
    columns = COLUMNS[state.kind]
    if everyone == 0 or not engine.types_on(state.queue):  # (mail: no job type runs on it)
        return ListView(state, Page([], 1, PER_PAGE, 0, DEFAULT_SORT[state.kind], "asc"), columns)
    base = _base(user, state)
    query = _filtered(base, state, mode)
    sortable = {key: expr for key, (label, expr) in columns.items()}
    tiebreak = Job.id if state.kind == "planned" else Run.id
    if args_apply:
        page = paginate(query, sortable, DEFAULT_SORT[state.kind], per_page=PER_PAGE, tiebreak=tiebreak,
                        keys_first=True)
    else:
        known = everyone if everyone is not None and not state.active and _sees_all(user) else None
        page = _first_page(query, sortable[DEFAULT_SORT[state.kind]], tiebreak, state.kind, known)
    unfiltered = page.total if not state.active else db.session.scalar(
        select(func.count()).select_from(base.order_by(None).subquery()))
    view = ListView(state, page, columns, others=_others(user, state, unfiltered, everyone))
    if state.kind == "running":
        view.live, view.redis_down = live_progress(page.items)
    elif state.kind == "waiting":
        view.waits, view.redis_down = waiting_reasons(state.queue, page.items, mode)
    return view


def _first_page(query, column, tiebreak, kind, total: int | None = None):
    if total is None:
        total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = page_items(query, query.order_by(column.asc(), tiebreak), tiebreak, PER_PAGE, keys_first=True) \
        if total else []
    return Page(items, 1, PER_PAGE, total, DEFAULT_SORT[kind], "asc")


def live_progress(runs) -> tuple[dict, bool]:
    """{run id: (percent, message)} from Redis in one round trip; the database's last saved
    progress when Redis does not answer (then True)."""
    saved = {run.id: (run.progress, run.progress_message) for run in runs}
    if not runs:
        return saved, False
    try:
        with redis_client.conn.pipeline(transaction=False) as pipe:
            for run in runs:
                pipe.hgetall(livelog.STATE.format(run.id))
            states = pipe.execute()
    except RedisError:
        return saved, True
    live = dict(saved)
    for run, state in zip(runs, states):
        state = {k.decode(): v.decode() for k, v in (state or {}).items()}
        if state.get("progress", "").isdigit():
            live[run.id] = (int(state["progress"]), state.get("message", ""))
    return live, False


def waiting_reasons(queue: str, runs, mode: str = "plain") -> tuple[dict, bool]:
    """{run id: Waiting} for a page of queued runs: on a paused queue, the resume ("paused"); on a
    serial queue, a run held in the database waits for its turn ("serial", behind the run just
    ahead of it on the queue); elsewhere the run of the same job ahead ("behind"); a run handed to
    RQ, a free worker at its position there ("queue"). One LRANGE of the RQ queue for the
    positions, one query for the runs ahead of those held back."""
    reasons, redis_down = {}, False
    handed = [run for run in runs if run.enqueued_at is not None]
    held = [run for run in runs if run.enqueued_at is None]
    if handed:
        try:  # the page's own runs only (LPOS each, one round trip), not the queue's whole list
            key = Queue(queue, connection=redis_client.conn).key
            with redis_client.conn.pipeline(transaction=False) as pipe:
                for run in handed:
                    pipe.lpos(key, f"{RUN_PREFIX}{run.id}")
                places = pipe.execute()
        except RedisError:
            places, redis_down = None, True
        for index, run in enumerate(handed):
            if places is None:
                reasons[run.id] = Waiting("unknown", queue=queue)
            elif places[index] is None:
                reasons[run.id] = Waiting("starting", queue=queue)
            else:
                reasons[run.id] = Waiting("queue", queue=queue, position=places[index] + 1)
    if held:
        reasons.update(_serial_line(queue, held) if engine.is_serial(queue) else _behind_own_job(held))
    if mode == "paused":
        reasons = {run_id: Waiting("paused", queue=queue, position=why.position) for run_id, why in reasons.items()}
    return reasons, redis_down


def _behind_own_job(held) -> dict:
    """Runs held back by the overlap rule: the active run of the same job each waits for first."""
    reasons = {}
    active = db.session.execute(
        select(Run.id, Run.job_id).where(Run.job_id.in_({run.job_id for run in held}),
                                         Run.status.in_(ACTIVE_STATUSES)).order_by(Run.id)).all()
    by_job = {}
    for run_id, job_id in active:
        by_job.setdefault(job_id, []).append(run_id)
    for run in held:
        line = [run_id for run_id in by_job.get(run.job_id, []) if run_id != run.id]
        before = [run_id for run_id in line if run_id < run.id]
        ahead = before[-1] if before else (line[0] if line else None)
        reasons[run.id] = Waiting("behind", run_id=ahead, position=len(before) + 1)
    return reasons


def _serial_line(queue: str, held) -> dict:
    """Runs held on a serial queue, which hands over its oldest waiting run when the one before
    ends: each is behind the active run of the queue just ahead of it (or the one running), at
    the place its queued predecessors give it. One statement for the page."""
    other, other_job = aliased(Run), aliased(Job)
    on_queue = (select(other.id).join(other_job, other_job.id == other.job_id)
                .where(other_job.job_type.in_(engine.types_on(queue)), other.id != Run.id))
    active = on_queue.where(other.status.in_(ACTIVE_STATUSES))
    ahead = func.coalesce(active.where(other.id < Run.id).with_only_columns(func.max(other.id)).scalar_subquery(),
                          active.with_only_columns(func.min(other.id)).scalar_subquery())
    before = on_queue.where(other.status == RunStatus.QUEUED, other.id < Run.id) \
        .with_only_columns(func.count(other.id)).scalar_subquery()
    rows = db.session.execute(select(Run.id, ahead, before).where(Run.id.in_([run.id for run in held]))).all()
    return {run_id: Waiting("serial", queue=queue, run_id=ahead_id, position=count + 1)
            for run_id, ahead_id, count in rows}


@dataclass
class QueueStatus:
    """What a queue's panel and the dashboard say of its state, for one reader."""
    name: str
    serial: bool
    pause_on_failure: bool = False
    paused_at: datetime | None = None
    paused_by: str = ""
    reason: str = ""
    failed_run_id: int | None = None  # the failed run that paused it, if the reader may see that run
    holds_runs: bool = True  # some job type runs on it (the mail queue carries report emails only)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def mode(self) -> str:
        """What its waiting runs wait for: "paused", "serial" or "plain"."""
        return "paused" if self.paused else ("serial" if self.serial else "plain")


OTHER_DOMAIN_FAILURE = "A run of another domain failed."


def statuses(user, names=None, paused_only=False) -> dict[str, QueueStatus]:
    """{queue: QueueStatus} for the named queues (every queue by default), in one query (two
    when a failed run paused one). A failed run's job and error are shown only to those who may
    see the run, with server paths hidden from all but superadmins (runs/present.py)."""
    names = visible_queues(user) if names is None else names
    query = select(QueueState).where(QueueState.name.in_(names))
    if paused_only:
        query = query.where(QueueState.paused_at.isnot(None))
    rows = {row.name: row for row in db.session.scalars(query)}
    failed = {row.paused_run_id for row in rows.values() if row.paused and row.paused_run_id}
    seen = set(db.session.scalars(select(Run.id).join(Run.job).where(Run.id.in_(failed), job_filter(user)))) \
        if failed else set()
    result = {}
    for name in names:
        row = rows.get(name)
        if paused_only and row is None:
            continue
        status = QueueStatus(name, serial=engine.is_serial(name), holds_runs=bool(engine.types_on(name)))
        if row is not None:
            status.pause_on_failure = row.pause_on_failure
            if row.paused:
                status.paused_at, status.paused_by, status.reason = row.paused_at, row.paused_by_name, row.reason
                if row.paused_run_id is not None:
                    if row.paused_run_id in seen:
                        status.failed_run_id = row.paused_run_id
                        status.reason = hide_paths(row.reason, shows_server_paths(user))
                    else:
                        status.reason = OTHER_DOMAIN_FAILURE
        result[name] = status
    return result


def queue_mode(queue: str) -> str:
    paused = db.session.scalar(select(QueueState.paused_at).where(QueueState.name == queue)) is not None
    return "paused" if paused else ("serial" if engine.is_serial(queue) else "plain")


@dataclass
class Panel:
    name: str
    lists: dict  # kind -> ListView
    status: QueueStatus
    mail: dict | None = None  # the mail queue: counts from RQ (report emails are not runs)


def panels(user, args) -> list[Panel]:
    """Every queue's panel; the list the URL names (queue=, list=) gets its sort, page and filters."""
    focus = (args.get("queue"), args.get("list"))
    result = []
    queues = statuses(user)
    counts = _everyone_counts(queues)
    for name, status in queues.items():
        lists = {}
        for kind in LISTS:
            chosen = focus == (name, kind)
            state = parse_state(name, kind, args if chosen else {})
            lists[kind] = list_view(user, state, chosen, status.mode, None if chosen else counts.get((name, kind), 0))
        panel = Panel(name, lists, status)
        if name == registry.MAIL_QUEUE:
            panel.mail = mail_counts()
        result.append(panel)
    return result


def _everyone_counts(queues, kinds=LISTS) -> dict[tuple[str, str], int]:
    """{(queue, list): entries for everyone} of the given queues and kinds of list, in at most
    two grouped queries that each read the waiting and running runs or the planned jobs once.
    Asking each list on its own read those rows again for every queue, most of which are empty
    most of the time; a list empty for everyone is asked nothing more, and one whose reader sees
    everything takes its count from here."""
    queue_of = {key: name for name in queues for key in engine.types_on(name)}
    counts = {}
    if queue_of and {"running", "waiting"} & set(kinds):
        busy = (select(Job.job_type, Run.status, func.count()).join(Run.job)
                .where(Job.job_type.in_(queue_of), Run.status.in_((RunStatus.QUEUED, RunStatus.IN_PROGRESS)))
                .group_by(Job.job_type, Run.status))
        for key, status, count in db.session.execute(busy):
            place = (queue_of[key], "running" if status == RunStatus.IN_PROGRESS else "waiting")
            counts[place] = counts.get(place, 0) + count
    if queue_of and "planned" in kinds:
        planned = (select(Job.job_type, func.count())
                   .where(Job.job_type.in_(queue_of), Job.deleted_at.is_(None), Job.state == JobState.ACTIVE,
                          Job.next_fire_at.isnot(None))
                   .group_by(Job.job_type))
        for key, count in db.session.execute(planned):
            counts[(queue_of[key], "planned")] = counts.get((queue_of[key], "planned"), 0) + count
    return counts


def visible_queues(user) -> list[str]:
    """The queues the user sees a panel of: all but those only hidden job types run on."""
    hidden = hidden_queues(user)
    return [name for name in engine.names() if name not in hidden]


def one_list(user, queue: str, kind: str, args) -> ListView:
    if queue not in visible_queues(user) or kind not in LISTS:
        raise UnknownQueue(queue)
    return list_view(user, parse_state(queue, kind, args), True, queue_mode(queue) if kind == "waiting" else "plain")


def mail_counts() -> dict | None:
    try:
        queue = Queue(registry.MAIL_QUEUE, connection=redis_client.conn)
        return {"waiting": queue.count,
                "sending": len(queue.started_job_registry.get_job_ids(cleanup=False))}
    except RedisError:
        return None


# --- workers -------------------------------------------------------------------------------

@dataclass
class WorkerRow:
    name: str
    hostname: str
    pid: int | None
    queues: list
    state: str
    run_id: int | None
    current_job: str | None
    last_heartbeat: datetime | None
    done: int
    failed: int
    lost: bool


class RedisDown(Exception):
    pass


def workers_for(user) -> list[WorkerRow]:
    """The workers as the user may see them: a worker that serves only queues hidden from the user
    left out, those queues left out of the others' lists, and a run the user may not see shown as
    busy without its number."""
    rows = workers()
    hidden = hidden_queues(user)
    running = {row.run_id for row in rows if row.run_id is not None}
    seen = set(db.session.scalars(select(Run.id).join(Run.job).where(Run.id.in_(running), job_filter(user)))) \
        if running else set()
    shown = []
    for row in rows:
        if row.queues and all(name in hidden for name in row.queues):
            continue  # a worker of hidden queues only (the scripts worker): its counts are of hidden runs
        row.queues = [name for name in row.queues if name not in hidden]
        if row.run_id is not None and row.run_id not in seen:
            row.run_id, row.current_job = None, "a run you cannot see"
        shown.append(row)
    return shown


def workers() -> list[WorkerRow]:
    """Every worker registered in Redis; one silent longer than RUN_DEAD_AFTER is lost."""
    dead_after = timedelta(seconds=current_app.config["RUN_DEAD_AFTER"])
    now = utcnow()
    try:
        found = RQWorker.all(connection=redis_client.conn)
        rows = []
        for worker in sorted(found, key=lambda w: w.name):
            beat = worker.last_heartbeat
            if beat is not None and beat.tzinfo is None:
                beat = beat.replace(tzinfo=timezone.utc)
            current = worker.get_current_job_id()
            lost = beat is None or now - beat > dead_after
            rows.append(WorkerRow(
                name=worker.name, hostname=_text(worker.hostname), pid=worker.pid, queues=worker.queue_names(),
                state="lost" if lost else str(worker.get_state()), run_id=run_id_of(current) if current else None,
                current_job=current, last_heartbeat=beat, done=worker.successful_job_count or 0,
                failed=worker.failed_job_count or 0, lost=lost))
        return rows
    except RedisError as exc:
        raise RedisDown(str(exc)) from None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""
