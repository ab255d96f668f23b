import functools
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text, bindparam, case, select, text, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models.accounts import Domain, User
from webapp.models.types import UTCDateTime, utcnow


class JobState(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"  # off its plan, still listed, can be restored
    ARCHIVED = "archived"


class Scope(StrEnum):
    DOMAIN = "domain"
    INSTALLATION = "installation"


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        # Names are unique among live jobs; a deleted job frees its name.
        Index(
            "uq_jobs_live_name",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_jobs_next_fire", "next_fire_at"),  # the dashboard's next planned fires
        Index("ix_jobs_last_status", "last_status"),  # the jobs list's status filter
        # A queue's planned list (its job types' next fires), counted and paged from the index alone.
        Index("ix_jobs_type_planned", "job_type", "state", "next_fire_at", "deleted_at", "domain_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    job_type: Mapped[str] = mapped_column(String(80))
    scope: Mapped[str] = mapped_column(String(20), default=Scope.DOMAIN)
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id"), index=True)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    plan: Mapped[dict] = mapped_column(JSON, default=lambda: {"kind": "disabled"})
    state: Mapped[str] = mapped_column(String(20), default=JobState.ACTIVE)
    system: Mapped[bool] = mapped_column(default=False)  # declared by a job type in code
    report_enabled: Mapped[bool] = mapped_column(default=False)
    report_recipients: Mapped[str] = mapped_column(Text, default="")
    run_as_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[object | None] = mapped_column(UTCDateTime)
    prev_fire_at: Mapped[object | None] = mapped_column(UTCDateTime)
    next_fire_at: Mapped[object | None] = mapped_column(UTCDateTime)
    # The job's latest run that did something (skipped occurrences do not count) and its status,
    # kept by dispatch (a new run) and the lifecycle (start, end) in the transactions that change
    # them, so the jobs list filters and sorts by status without reading each job's runs. The run
    # may since have been purged from history; its status stays.
    last_run_id: Mapped[int | None]
    last_status: Mapped[str | None] = mapped_column(String(30))
    # Bumped by every dispatch: the UPDATE takes the job's row lock (PostgreSQL) or the
    # write lock (SQLite) first, so dispatches of one job never interleave.
    dispatch_seq: Mapped[int] = mapped_column(default=0)
    # Bumped by every saved edit: a form carries the version it was opened at, and a save
    # from a stale form is refused instead of silently reverting someone else's change.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    domain: Mapped[Domain | None] = relationship()
    run_as: Mapped[User | None] = relationship(foreign_keys=[run_as_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    @property
    def is_live(self) -> bool:
        return self.deleted_at is None

    @property
    def schedulable(self) -> bool:
        return self.deleted_at is None and self.state == JobState.ACTIVE

    @classmethod
    def live(cls):
        return select(cls).where(cls.deleted_at.is_(None))

    @classmethod
    def lock(cls, job_id: int, ended: tuple[int, str] | None = None) -> str | None:
        """Serialise work on one job until the surrounding transaction commits; returns its job
        type (None if there is no such job). `ended`: (run id, status) of a run ending in this
        transaction; if it is the job's latest run, its status becomes the job's last status in
        the same statement."""
        plain, with_end = _lock_statements()
        if ended is None:
            return db.session.execute(plain, {"job_id": job_id}).scalar()
        return db.session.execute(with_end, {"job_id": job_id, "ended_run": ended[0],
                                             "ended_status": ended[1]}).scalar()

    def __repr__(self):
        return f"<Job {self.id} {self.name}>"


@functools.cache
def _lock_statements():
    """Job.lock's two UPDATEs, built once: every run's end and every dispatch takes the lock, and
    building the ORM statement each time was most of a run's end in the worker (about 1 ms).
    updated_at stays: taking the lock is not an edit of the job (Core would apply onupdate)."""
    jobs = Job.__table__
    plain = (update(jobs).where(jobs.c.id == bindparam("job_id"))
             .values(dispatch_seq=jobs.c.dispatch_seq + 1, updated_at=jobs.c.updated_at)
             .returning(jobs.c.job_type))
    with_end = plain.values(last_status=case(
        (jobs.c.last_run_id == bindparam("ended_run"), bindparam("ended_status", type_=jobs.c.last_status.type)),
        else_=jobs.c.last_status))
    return plain, with_end

