"""Support scripts (SPEC 8): a script job is a Job of type `support.script`; its Python is kept
here, every saved version of it, so that the job page can show each version and the difference
between any two, and a run says which version it ran (by MD5)."""
import hashlib

from sqlalchemy import ForeignKey, Index, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.types import UTCDateTime, utcnow


def script_md5(text: str) -> str:
    """The MD5 shown for a script (S2): of its UTF-8 text, line ends as saved."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class ScriptVersion(db.Model):
    """One saved version of a script job's script. Versions are only ever added: number 1 is the
    script the job was created with, the highest number is the one that runs."""

    __tablename__ = "script_versions"
    __table_args__ = (Index("ux_script_versions_job_number", "job_id", "number", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    number: Mapped[int]
    script: Mapped[str] = mapped_column(Text)
    md5: Mapped[str] = mapped_column(String(32))
    saved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    saved_by_name: Mapped[str] = mapped_column(String(80), default="")  # kept if the user goes
    saved_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)

    @classmethod
    def current(cls, job_id: int) -> "ScriptVersion | None":
        """The version that runs: the job's latest."""
        return db.session.scalar(select(cls).where(cls.job_id == job_id).order_by(cls.number.desc()).limit(1))

    @classmethod
    def current_md5s(cls, job_ids) -> dict[int, "ScriptVersion"]:
        """job id -> its latest version, for a list of jobs, in one query."""
        ids = list(job_ids)
        if not ids:
            return {}
        latest = (select(cls.job_id, db.func.max(cls.number).label("number"))
                  .where(cls.job_id.in_(ids)).group_by(cls.job_id).subquery())
        rows = db.session.scalars(select(cls).join(latest, (cls.job_id == latest.c.job_id)
                                                   & (cls.number == latest.c.number)))
        return {row.job_id: row for row in rows}
