"""Linkage projects (SPEC 9, S4): a domain of kind "linkage" receives envelopes of person records;
each envelope runs a chain of steps on the serial processing queue (webapp/linkage/chain.py) that
validate and load its records, match them with the project's records, group the matches and report.
Everything an envelope brings (records, matches, notifications) names it, so a rollback can take
exactly that out again."""
from enum import StrEnum

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models.accounts import Domain
from webapp.models.types import UTCDateTime, utcnow

LINKAGE_KIND = "linkage"  # Domain.kind of a linkage project


class EnvelopeStatus(StrEnum):
    """The seven statuses of S4. "Active" = the chain has steps still to run."""

    SUCCESS_ACTIVE = "success_active"
    ERRORS_ACTIVE = "errors_active"
    SUCCESS = "success"
    ERRORS = "errors"
    CORRUPT = "corrupt"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"


# label, tooltip
ENVELOPE_STATUS_TEXT = {
    EnvelopeStatus.SUCCESS_ACTIVE: ("Success (active)", "The envelope is being processed; no errors so far."),
    EnvelopeStatus.ERRORS_ACTIVE: ("Errors (active)", "The envelope is being processed, and errors have occurred."),
    EnvelopeStatus.SUCCESS: ("Success", "The envelope was processed without errors."),
    EnvelopeStatus.ERRORS: ("Errors", "The envelope was processed, with errors: see its notifications."),
    EnvelopeStatus.CORRUPT: ("Corrupt", "The envelope cannot be used: see the reason."),
    EnvelopeStatus.CANCELLED: ("Cancelled", "The envelope was cancelled; its remaining steps did not run."),
    EnvelopeStatus.ROLLED_BACK: ("Rolled back", "Everything the envelope loaded was taken out again."),
}
FINAL_ENVELOPE_STATUSES = (EnvelopeStatus.CORRUPT, EnvelopeStatus.CANCELLED, EnvelopeStatus.ROLLED_BACK)


class Envelope(db.Model):
    """One upload: a zip with a manifest and CSV files, or a single CSV (an implicit envelope)."""

    __tablename__ = "envelopes"
    __table_args__ = (Index("ix_envelopes_project", "project_id", "id"),
                      Index("ix_envelopes_status", "status", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    name: Mapped[str] = mapped_column(String(255))  # the uploaded file's name, as the user sent it
    kind: Mapped[str] = mapped_column(String(10))  # "zip" or "csv"
    path: Mapped[str] = mapped_column(String(500), default="")  # relative to FILES_DIR; "" if refused
    size: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(20), default=EnvelopeStatus.SUCCESS_ACTIVE)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it is corrupt, cancelled or rolled back
    record_count: Mapped[int] = mapped_column(default=0)  # records loaded (and not rolled back)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_by_name: Mapped[str] = mapped_column(String(80), default="")
    uploaded_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[object | None] = mapped_column(UTCDateTime)  # the chain's end (or cancel, rollback)

    project: Mapped[Domain] = relationship()

    @property
    def status_label(self) -> str:
        return ENVELOPE_STATUS_TEXT[EnvelopeStatus(self.status)][0]

    @property
    def status_tooltip(self) -> str:
        return ENVELOPE_STATUS_TEXT[EnvelopeStatus(self.status)][1]

    @property
    def domain_id(self) -> int:  # audit records keep the domain of their object
        return self.project_id


class EnvelopeNotification(db.Model):
    """Something raised while processing an envelope (S4 "Notifications"): one per reason, with the
    count of rows it concerns and the first line numbers."""

    __tablename__ = "envelope_notifications"
    __table_args__ = (Index("ix_envelope_notifications_envelope", "envelope_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelopes.id"))
    run_id: Mapped[int | None]  # no foreign key: the run may be purged from history
    step: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(10))  # info, warning, error
    reason: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(default=1)
    first_lines: Mapped[str] = mapped_column(String(200), default="")  # "3, 7, 12" (file:line where several files)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)


class LinkageRecord(db.Model):
    """A person record of a project. Its id in the envelope's file (`record_key`) is unique in the
    project: a row whose id the project holds already (from an earlier envelope, or earlier in the
    same one) is rejected, so loading never overwrites what another envelope brought, and a rollback
    only ever deletes."""

    __tablename__ = "linkage_records"
    __table_args__ = (UniqueConstraint("project_id", "record_key", name="uq_linkage_records_project_key"),
                      Index("ix_linkage_records_envelope", "envelope_id"),
                      Index("ix_linkage_records_group", "project_id", "group_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelopes.id"))
    record_key: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str] = mapped_column(String(100), default="")
    surname: Mapped[str] = mapped_column(String(100), default="")
    dob: Mapped[str | None] = mapped_column(String(10))  # ISO date, parsed from the file's format
    sex: Mapped[str] = mapped_column(String(1), default="")  # "M", "F" or "" (unknown)
    postcode: Mapped[str] = mapped_column(String(20), default="")
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # the file's other columns
    source_file: Mapped[str] = mapped_column(String(255), default="")
    line_no: Mapped[int] = mapped_column(default=0)
    # The group (connected component of the matches) the record is in: the smallest record id of
    # the group, so a group keeps its id when later records join it. None until grouped.
    group_id: Mapped[int | None]


class LinkageMatch(db.Model):
    """A pair of records the match step of `envelope_id` found to be the same person. Each pair
    involves at least one record of that envelope."""

    __tablename__ = "linkage_matches"
    __table_args__ = (Index("ix_linkage_matches_project", "project_id"),
                      Index("ix_linkage_matches_envelope", "envelope_id"),
                      Index("ix_linkage_matches_r", "record_r"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelopes.id"))
    record_l: Mapped[int]  # record ids, record_l < record_r (no foreign keys: a pair row each, bulk)
    record_r: Mapped[int]
    probability: Mapped[float] = mapped_column(Float)
