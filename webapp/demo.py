"""Demo data for `flask demo seed`: idempotent, so `make run` can call it every time.

Study A holds clinical data from the start (imported through the loader), and an ODM file waits
in the `demo` folder of the import directory with an import job whose first run, as soon as the
scheduler is up, imports it: a newcomer sees an import succeed within a minute of `make run`."""
import os
import tempfile
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from webapp.accounts import create_user
from webapp.clinical.loader import Actor, import_file
from webapp.extensions import db
from webapp.formats.synth import FORM_OID, ITEM_GROUP_OID, write_synthetic_odm
from webapp.jobtypes import registry
from webapp.models import (ClinicalOid, Dataset, DatasetItem, Domain, ItemDef, Job, JobState, OidKind, Role, Run,
                           RunLogLine, RunStatus, Scope, Subject, Trigger, User)
from webapp.models.types import utcnow
from webapp.scheduling import sync

PASSWORD = "demo"
DOMAINS = [("Study A", None), ("Site A1", "Study A"), ("Site A2", "Study A"), ("Study B", None)]
# The StudyOID each domain's ODM files carry.
DOMAIN_OIDS = {"Study A": "STUDY-A", "Site A1": "STUDY-A-SITE-A1", "Site A2": "STUDY-A-SITE-A2", "Study B": "STUDY-B"}
STUDY_A_OID = DOMAIN_OIDS["Study A"]
LOADED_SUBJECTS = 40  # Study A's data at seed time; the waiting file brings subjects 41-50
WAITING_SUBJECTS = 10
DEMO_FOLDER = "demo"  # in the import directory
WAITING_FILE = "study-a-visits.xml"
IMPORT_JOB = dict(name="Study A ODM import", domain="Study A",
                  params={"subdirectory": DEMO_FOLDER, "file_pattern": "*.xml"},
                  plan={"kind": "interval", "every": 15, "unit": "minutes"},
                  description="Imports the ODM files put in the demo folder of the import directory into Study A "
                              "every 15 minutes.")
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
    _give_oids()
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
    subjects = _study_a_data()
    _import_job(admin)
    _vitals_export(admin)
    _script_jobs(admin)
    from webapp.linkage import demo as linkage_demo

    linkage_demo.seed(admin)
    if not db.session.scalar(select(User).where(User.username == "registry-admin")):
        create_user(password=PASSWORD, username="registry-admin", role=Role.DOMAIN_ADMIN,
                    domain_name=linkage_demo.PROJECT)  # sees Registry L's envelopes only
    return {"domains": len(DOMAINS), "users": len(USERS), "jobs": db.session.query(Job).count(),
            "Study A subjects": subjects}


def _give_oids():
    """Each demo domain's StudyOID, unless it has one or another domain holds it."""
    taken = set(db.session.scalars(select(Domain.oid).where(Domain.oid.isnot(None))))
    for name, oid in DOMAIN_OIDS.items():
        domain = _domain(name)
        if domain is not None and domain.oid is None and oid not in taken:
            domain.oid = oid
            taken.add(oid)
    db.session.commit()


def _study_a_data() -> int:
    """Study A's first subjects, imported through the loader as an import job would; the
    number of subjects it holds."""
    study = _domain("Study A")
    held = db.session.scalar(select(func.count(Subject.id)).where(Subject.domain_id == study.id))
    if held or study.oid != STUDY_A_OID:
        return held
    handle, path = tempfile.mkstemp(suffix=".xml")
    try:
        with os.fdopen(handle, "wb") as out:
            write_synthetic_odm(out, subjects=LOADED_SUBJECTS, study_oid=STUDY_A_OID)
        stats = import_file(path, study.id, Actor(None, "system"))
        db.session.commit()
    finally:
        os.unlink(path)
    return stats.subjects


def write_waiting_file() -> str:
    """The ODM file that waits in the demo folder of the import directory (Study A's subjects
    41-50, three visits each); its path."""
    folder = os.path.join(current_app.config["IMPORT_DIR"], DEMO_FOLDER)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, WAITING_FILE)
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=WAITING_SUBJECTS, study_oid=STUDY_A_OID, first_subject=LOADED_SUBJECTS + 1)
    return path


def _import_job(admin):
    """The demo import job, and the file it waits for: written only with the job, so a second
    seed neither writes it again nor adds a job."""
    if db.session.scalar(Job.live().where(Job.name == IMPORT_JOB["name"])) is not None:
        return
    write_waiting_file()
    # An interval counts from when it is saved: the first run is now, as for a job saved on the form.
    plan = {**IMPORT_JOB["plan"], "anchor": utcnow().replace(microsecond=0).isoformat()}
    job = Job(name=IMPORT_JOB["name"], description=IMPORT_JOB["description"], job_type="import_data",
              scope=Scope.DOMAIN, domain=_domain(IMPORT_JOB["domain"]), params=IMPORT_JOB["params"], plan=plan,
              created_by=admin)
    db.session.add(job)
    db.session.commit()
    sync.reschedule(job)


# --- the export side: a Vitals dataset of Study A and a weekly export job of it -------------------

VITALS = dict(name="Vitals", description="Blood pressure, temperature, pulse and weight at every visit.",
              items=("I_VS_SYSBP", "I_VS_TEMP", "I_VS_PULSE", "I_VS_WEIGHT", "I_VS_VSDAT"))
EXPORT_JOB = dict(name="Study A weekly Vitals export", domain="Study A", format="csv",
                  description="Exports the Vitals dataset of Study A as CSV every week.")


def _vitals_export(admin):
    """The Vitals dataset and its weekly export job, once an export job type is installed
    (`export_dataset`, parameters dataset and format). Its period starts at the next minute, so
    the first export follows the seed within a minute, then one each week at that time."""
    if not registry.is_known("export_dataset"):
        return
    study = _domain("Study A")
    dataset = _vitals_dataset(study, admin)
    if dataset is None or db.session.scalar(Job.live().where(Job.name == EXPORT_JOB["name"])) is not None:
        return
    export = registry.get("export_dataset")
    params = export.params().dump(export.load_params({"dataset": str(dataset.id), "format": EXPORT_JOB["format"]}))
    start = datetime.now(sync.timezone()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    job = Job(name=EXPORT_JOB["name"], description=EXPORT_JOB["description"], job_type=export.key,
              scope=Scope.DOMAIN, domain=study, params=params, created_by=admin,
              plan={"kind": "period", "start": start.strftime("%Y-%m-%dT%H:%M"), "repeat": "weekly"})
    db.session.add(job)
    db.session.commit()
    sync.reschedule(job)


def _vitals_dataset(study, admin) -> Dataset | None:
    """Study A's Vitals dataset: the vital signs of the synthetic files at every visit; None
    while Study A has none of those items."""
    dataset = db.session.scalar(select(Dataset).where(Dataset.domain_id == study.id, Dataset.name == VITALS["name"]))
    if dataset is not None:
        return dataset
    items = db.session.scalars(select(ItemDef.id).where(ItemDef.domain_id == study.id,
                                                         ItemDef.oid.in_(VITALS["items"]))).all()
    oids = {(row.kind, row.oid): row.id for row in db.session.scalars(
        select(ClinicalOid).where(ClinicalOid.domain_id == study.id))}
    events = sorted(oid_id for (kind, _), oid_id in oids.items() if kind == OidKind.EVENT)
    form, group = oids.get((OidKind.FORM, FORM_OID)), oids.get((OidKind.GROUP, ITEM_GROUP_OID))
    if not items or not events or form is None or group is None:
        return None
    dataset = Dataset(domain_id=study.id, name=VITALS["name"], description=VITALS["description"], created_by=admin)
    dataset.items = [DatasetItem(event_id=event, form_id=form, group_id=group, item_id=item)
                     for event in events for item in items]
    db.session.add(dataset)
    db.session.commit()
    return dataset


# --- the support page: two script jobs -----------------------------------------------------------

RUNS_LAST_HOUR = """\
# Counts the runs created in the last hour, so support sees the load at a glance.
from datetime import timedelta

from sqlalchemy import func, select

from webapp.models import Run
from webapp.models.types import utcnow

since = utcnow() - timedelta(hours=1)
count = db.scalar(select(func.count()).select_from(Run).where(Run.created_at >= since))
log(f"Runs created in the last hour: {count}")
"""
OLD_CLEANUP = """\
# Replaced by the system job "Delete orphaned export files"; kept archived for its history.
log("Nothing to do: this script is archived.")
"""
SCRIPT_JOBS = [
    dict(name="Count runs of the last hour", script=RUNS_LAST_HOUR, seconds=60, run_as="api-bot", archived=False,
         description="Logs how many runs were created in the last hour, every minute."),
    dict(name="Old export clean-up", script=OLD_CLEANUP, seconds=300, run_as=None, archived=True,
         description="Archived: the system job took its place."),
]


def _script_jobs(admin):
    """The support page's demo: a script that logs the runs of the last hour every 60 s, run as the
    api-bot system account, and an archived one."""
    from webapp.jobtypes.script import KEY
    from webapp.models.scripts import ScriptVersion, script_md5

    for spec in SCRIPT_JOBS:
        if db.session.scalar(Job.live().where(Job.name == spec["name"])) is not None:
            continue
        run_as = db.session.scalar(select(User).where(User.username == spec["run_as"])) if spec["run_as"] else None
        plan = {"kind": "poll", "seconds": spec["seconds"], "anchor": utcnow().replace(microsecond=0).isoformat()}
        job = Job(name=spec["name"], description=spec["description"], job_type=KEY, scope=Scope.INSTALLATION,
                  params={"config": {}, "time_limit": None}, plan=plan, run_as=run_as, created_by=admin,
                  state=JobState.ARCHIVED if spec["archived"] else JobState.ACTIVE)
        db.session.add(job)
        db.session.flush()
        db.session.add(ScriptVersion(job_id=job.id, number=1, script=spec["script"], md5=script_md5(spec["script"]),
                                     saved_by_id=admin.id, saved_by_name=admin.username))
        db.session.commit()
        sync.reschedule(job)


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
