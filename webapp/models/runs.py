from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, event, inspect, or_, select, text, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models.accounts import User
from webapp.models.jobs import Job
from webapp.models.types import UTCDateTime, utcnow


class RunStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    WARNINGS = "succeeded_with_warnings"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.IN_PROGRESS)
FINAL_STATUSES = (
    RunStatus.SUCCEEDED, RunStatus.WARNINGS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED
)
STATUS_LABELS = {
    RunStatus.QUEUED: "Queued",
    RunStatus.IN_PROGRESS: "In progress",
    RunStatus.SUCCEEDED: "Succeeded",
    RunStatus.WARNINGS: "Succeeded with warnings",
    RunStatus.FAILED: "Failed",
    RunStatus.CANCELLED: "Cancelled",
    RunStatus.SKIPPED: "Skipped",
}


class Trigger(StrEnum):
    PLAN = "plan"
    HAND = "hand"
    API = "api"
    CLI = "cli"
    RETRY = "retry"
    ENVELOPE = "envelope"  # a step of an envelope's chain (webapp/linkage/chain.py)


class Run(db.Model):
    __tablename__ = "runs"
    __table_args__ = (
        # Claiming an occurrence = inserting its run; the second claim of one fire time fails.
        UniqueConstraint("job_id", "occurrence_at", name="uq_runs_job_occurrence"),
        # Status first: housekeeping asks for the runs in progress or queued, and finds them by
        # a seek however many finished runs there are; a job's active runs are two seeks.
        Index("ix_runs_status_job", "status", "job_id"),
        Index("ix_runs_created_at", "created_at"),
        # A job's runs newest first, by id (job page) or by creation (API date ranges).
        Index("ix_runs_job_id", "job_id", "id"),
        Index("ix_runs_job_created", "job_id", "created_at", "id"),
        # Executions filtered by status, newest first, without a date window.
        Index("ix_runs_status_id", "status", "id"),
        # "Retried as", and the foreign key's SET NULL when history is purged.
        Index("ix_runs_retry_of", "retry_of_id"),
        Index("ix_runs_envelope", "envelope_id", "id"),
        # A queue's waiting list in its order: handed to RQ first, then held back, by id.
        Index("ix_runs_status_waiting", "status", text("(enqueued_at IS NULL)"), "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    trigger: Mapped[str] = mapped_column(String(20))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    args: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), default=RunStatus.QUEUED)
    occurrence_at: Mapped[object | None] = mapped_column(UTCDateTime)  # the planned fire time
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[object | None] = mapped_column(UTCDateTime)  # handed to RQ
    started_at: Mapped[object | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[object | None] = mapped_column(UTCDateTime)
    progress: Mapped[int] = mapped_column(default=0)
    progress_message: Mapped[str] = mapped_column(Text, default="")
    warning_count: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    line_count: Mapped[int] = mapped_column(default=0)
    message: Mapped[str] = mapped_column(Text, default="")  # skip reason, first error, cancel note
    worker_name: Mapped[str | None] = mapped_column(String(200))
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    cancel_requested_at: Mapped[object | None] = mapped_column(UTCDateTime)
    cancel_requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # A retry is a new run of the same job; it points at the run it retries.
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # The envelope whose chain this run is a step of (linkage projects); its step is in args.
    envelope_id: Mapped[int | None] = mapped_column(ForeignKey("envelopes.id"))

    job: Mapped[Job] = relationship()
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    files: Mapped[list["RunFile"]] = relationship(back_populates="run", order_by="RunFile.id")
    retry_of: Mapped["Run | None"] = relationship(remote_side=[id], foreign_keys=[retry_of_id])

    @property
    def rq_job_id(self) -> str:
        return f"firetime-run-{self.id}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[RunStatus(self.status)]

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @classmethod
    def active_for(cls, job_id: int):
        return select(cls).where(cls.job_id == job_id, cls.status.in_(ACTIVE_STATUSES))

    def __repr__(self):
        return f"<Run {self.id} job={self.job_id} {self.status}>"


class RunLogLine(db.Model):
    __tablename__ = "run_log_lines"
    __table_args__ = (Index("ix_run_log_lines_run_seq", "run_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    at: Mapped[object] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)


class RunFile(db.Model):
    __tablename__ = "run_files"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Files outlive their runs' history (the export archive), so no cascade from runs.
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(500))  # relative to FILES_DIR
    size: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    content_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    # An export's file in the archive: its dataset (the name kept if the dataset is deleted) and format.
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    dataset_name: Mapped[str] = mapped_column(String(120), default="", server_default="")
    file_format: Mapped[str] = mapped_column(String(10), default="", server_default="")

    run: Mapped[Run | None] = relationship(back_populates="files")
    job: Mapped[Job] = relationship()


class LogRead(db.Model):
    """How much of a run's log a user has read: the jobs list shows a dark log icon while the
    latest run of a job has lines its user has not read. One row per user and run."""

    __tablename__ = "log_reads"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True,
                                        index=True)
    lines_read: Mapped[int] = mapped_column(default=0)  # the run's line count when last opened
    read_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


# Job.last_run_id and Job.last_status follow each job's latest run that did something (skipped
# occurrences do not count). Runs written through the ORM keep them by these two events; the
# engine's own statements that bypass the ORM (the claim, the end of a run, runs inserted in bulk)
# keep them in the same transactions (lifecycle.claim, Job.lock(ended=...), dispatch._became_latest).

@event.listens_for(Run, "after_insert")
def _newest_run_inserted(mapper, connection, run):
    if run.status == RunStatus.SKIPPED:
        return
    jobs = Job.__table__
    connection.execute(update(jobs).where(jobs.c.id == run.job_id,
                                          or_(jobs.c.last_run_id.is_(None), jobs.c.last_run_id <= run.id))
                       .values(last_run_id=run.id, last_status=run.status, updated_at=jobs.c.updated_at))


@event.listens_for(Run, "after_update")
def _run_status_changed(mapper, connection, run):
    if not inspect(run).attrs.status.history.has_changes():
        return
    jobs = Job.__table__
    connection.execute(update(jobs).where(jobs.c.id == run.job_id, jobs.c.last_run_id == run.id)
                       .values(last_status=run.status, updated_at=jobs.c.updated_at))
