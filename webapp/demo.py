"""Demo data for `flask demo seed`: idempotent, so `make run` can call it every time."""
from datetime import timedelta

from sqlalchemy import select

from webapp.accounts import create_user
from webapp.extensions import db
from webapp.models import Domain, Job, Role, Run, RunLogLine, RunStatus, Scope, Trigger, User
from webapp.models.types import utcnow
from webapp.scheduling import sync

PASSWORD = "demo"
DOMAINS = [("Study A", None), ("Site A1", "Study A"), ("Site A2", "Study A"), ("Study B", None)]
USERS = [
    dict(username="superadmin", role=Role.SUPERADMIN),
    dict(username="sysadmin", role=Role.SYSADMIN, supervise=("Study A",)),
    dict(username="studya-admin", role=Role.DOMAIN_ADMIN, domain_name="Study A"),
    dict(username="studyb-admin", role=Role.DOMAIN_ADMIN, domain_name="Study B"),
    dict(username="api-bot", role=Role.SYSTEM, supervise=("Study A", "Study B")),
]
JOBS = [
    dict(name="Study A nightly self-test", domain="Study A", params={"duration": 20, "lines_per_second": 2},
         plan={"kind": "daily", "days": [0, 1, 2, 3, 4, 5, 6], "times": ["01:00"]},
         description="Checks the workers and the live log every night."),
    dict(name="Site A1 self-test", domain="Site A1", params={"duration": 30, "lines_per_second": 4,
                                                             "output_csv": True},
         plan={"kind": "disabled"}, description="Run by hand to check a site's set-up."),
    dict(name="Study B self-test", domain="Study B", params={"duration": 10, "lines_per_second": 1},
         plan={"kind": "interval", "every": 6, "unit": "hours"}, description="Every six hours."),
    dict(name="Installation self-test", domain=None, params={"duration": 5, "lines_per_second": 2},
         plan={"kind": "cron", "expression": "0 * * * *"}, description="Hourly, for the whole installation."),
]


def seed() -> dict:
    for name, parent in DOMAINS:
        if not db.session.scalar(select(Domain).where(Domain.name == name)):
            db.session.add(Domain(name=name, parent=_domain(parent) if parent else None))
            db.session.flush()
    db.session.commit()
    for spec in USERS:
        if not db.session.scalar(select(User).where(User.username == spec["username"])):
            create_user(password=None if spec["role"] == Role.SYSTEM else PASSWORD, **spec)
    sync.ensure_system_jobs()
    admin = db.session.scalar(select(User).where(User.username == "superadmin"))
    created = []
    for spec in JOBS:
        if db.session.scalar(Job.live().where(Job.name == spec["name"])):
            continue
        plan = dict(spec["plan"])
        if plan["kind"] == "interval":
            plan["anchor"] = utcnow().replace(microsecond=0).isoformat()
        job = Job(name=spec["name"], description=spec["description"], job_type="system.selftest",
                  scope=Scope.DOMAIN if spec["domain"] else Scope.INSTALLATION,
                  domain=_domain(spec["domain"]) if spec["domain"] else None,
                  params=spec["params"], plan=plan, created_by=admin)
        db.session.add(job)
        created.append(job)
    db.session.commit()
    for turn, job in enumerate(created):
        _history(job, turn)
        sync.reschedule(job)
    return {"domains": len(DOMAINS), "users": len(USERS), "jobs": db.session.query(Job).count()}


def _domain(name):
    return db.session.scalar(select(Domain).where(Domain.name == name))


def _history(job, turn):
    """A few finished runs so that the lists have something to show on first start."""
    now = utcnow()
    outcomes = [(RunStatus.SUCCEEDED, ""), (RunStatus.WARNINGS, ""),
                (RunStatus.FAILED, "SelfTestFailure: The self-test was asked to fail at the end.")]
    outcomes = outcomes[turn % 3:] + outcomes[:turn % 3]  # each job ends on another status
    for hours_ago, (status, message) in zip((26, 14, 3), outcomes, strict=True):
        started = now - timedelta(hours=hours_ago)
        run = Run(job_id=job.id, trigger=Trigger.HAND, status=status, created_at=started, enqueued_at=started,
                  started_at=started, finished_at=started + timedelta(seconds=12), progress=100,
                  progress_message="done", message=message, worker_name="demo", line_count=3,
                  warning_count=int(status == RunStatus.WARNINGS), error_count=int(status == RunStatus.FAILED))
        db.session.add(run)
        db.session.flush()
        lines = [("info", "Self-test started."), ("info", "Self-test line 1 at 0.0 s.")]
        lines.append({RunStatus.SUCCEEDED: ("info", "Self-test finished."),
                      RunStatus.WARNINGS: ("warning", "Disk is 85% full on the demo worker."),
                      RunStatus.FAILED: ("error", message)}[status])
        db.session.add_all(RunLogLine(run_id=run.id, seq=i, at=started + timedelta(seconds=i), level=level,
                                      message=text) for i, (level, text) in enumerate(lines, 1))
    db.session.commit()
