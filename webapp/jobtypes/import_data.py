"""Import data (S0 6.5.1): every ODM 1.3 ClinicalData file waiting in the import folder, oldest
first, each in one transaction into the job's domain (or one of its sites, by StudyOID).
Imported files go to processed/<date>/; a file that fails leaves nothing behind and goes to
failed/ with <name>.error.txt saying why."""
import os

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validates
from sqlalchemy import select

from webapp.clinical import folder as import_folder
from webapp.clinical.loader import Actor, ImportRefused, import_file
from webapp.extensions import db
from webapp.formats.odm import OdmError
from webapp.jobtypes.registry import JobType, register
from webapp.models import Job, Run, User
from webapp.models.types import utcnow

KEY = "import_data"
FILES_IN_STATS = 100  # per-file statistics kept in the run (the log has every file)


class ImportFailed(Exception):
    """The run cannot import anything (no folder, no domain): its message says why."""


class ImportParams(Schema):
    subdirectory = fields.String(load_default="", metadata={
        "label": "Subdirectory", "help": "A folder inside the import directory; empty: the import directory itself."})
    file_pattern = fields.String(load_default="*.xml", metadata={"label": "File pattern"})

    @validates("subdirectory")
    def _inside(self, value, **_):
        try:
            import_folder.check_subdirectory(current_app.config["IMPORT_DIR"], value)
        except import_folder.FolderError as exc:
            raise ValidationError(str(exc)) from None

    @validates("file_pattern")
    def _pattern(self, value, **_):
        try:
            import_folder.check_pattern(value)
        except import_folder.FolderError as exc:
            raise ValidationError(str(exc)) from None


def actor_of(ctx) -> Actor:
    """Changes are audited under the job's run-as user, else the user who started the run."""
    if ctx.run_as is not None:
        return Actor(ctx.run_as.id, ctx.run_as.username)
    row = db.session.execute(select(User.id, User.username).join(Run, Run.requested_by_id == User.id)
                             .where(Run.id == ctx.run_id)).first()
    return Actor(row.id, row.username) if row else Actor(None, "system")


def run_import(ctx, subdirectory, file_pattern):
    base = current_app.config["IMPORT_DIR"]
    try:
        folder = import_folder.check_subdirectory(base, subdirectory)
        pattern = import_folder.check_pattern(file_pattern)
        files = import_folder.waiting_files(folder, pattern)
    except import_folder.FolderError as exc:
        raise ImportFailed(f"The import folder cannot be used: {exc}") from None
    except OSError as exc:
        raise ImportFailed(f"The import folder {_shown(base, folder)} cannot be read: {exc.strerror or exc}.") from None
    domain_id = db.session.scalar(select(Job.domain_id).where(Job.id == ctx.job_id))
    if domain_id is None:
        raise ImportFailed("An import job imports into its execution domain: give the job a domain.")
    actor = actor_of(ctx)
    db.session.commit()
    ctx.info(f"{len(files)} file{'s' if len(files) != 1 else ''} matching {pattern} in {_shown(base, folder)}.")
    per_file, totals = [], {"files_imported": 0, "files_failed": 0, "values_inserted": 0, "values_updated": 0,
                            "values_unchanged": 0}
    for done, path in enumerate(files):
        ctx.check_cancelled()
        outcome = _import_one(ctx, base, folder, path, domain_id, actor)
        if outcome is not None:
            totals["files_imported" if "error" not in outcome else "files_failed"] += 1
            for key in ("values_inserted", "values_updated", "values_unchanged"):
                totals[key] += outcome.get(key, 0)
            if len(per_file) < FILES_IN_STATS:
                per_file.append(outcome)
        ctx.progress(100 * (done + 1) / len(files), f"{done + 1} of {len(files)} files")
    for key, value in totals.items():
        ctx.stat(key, value)
    ctx.stat("files", per_file)


def _import_one(ctx, base, folder, path, domain_id, actor) -> dict | None:
    name = os.path.basename(path)
    if import_folder.escapes(base, path):
        return _failed(ctx, folder, path, "the file is a symbolic link that leads outside the import directory.")
    try:
        stats = import_file(path, domain_id, actor, ctx.run_id)
        db.session.commit()
    except FileNotFoundError:
        db.session.rollback()
        ctx.warning(f"{name} went away before it could be imported: skipped.")
        return None
    except (OdmError, ImportRefused) as exc:
        db.session.rollback()
        return _failed(ctx, folder, path, str(exc))
    except UnicodeDecodeError as exc:
        db.session.rollback()
        return _failed(ctx, folder, path, f"the file is not in the encoding it declares ({exc.reason}).")
    except Exception as exc:  # a database error, say: the file keeps its reason, the run goes on
        db.session.rollback()
        return _failed(ctx, folder, path, f"{type(exc).__name__}: {str(exc)[:500]}")
    try:
        import_folder.move_processed(folder, path, utcnow().date())
    except OSError as exc:  # imported all the same; a second import of it changes nothing
        ctx.warning(f"{name} was imported but could not be moved to {import_folder.PROCESSED}/ ({exc}).")
    ctx.info(f"{name}: {stats.subjects} subjects, {stats.events} events; values {stats.inserted} inserted, "
             f"{stats.updated} updated, {stats.unchanged} unchanged ({stats.bytes:,} bytes in {stats.seconds:.2f} s).")
    return {"file": name, **stats.as_dict()}


def _failed(ctx, folder, path, reason) -> dict:
    name = os.path.basename(path)
    try:
        import_folder.move_failed(folder, path, reason)
        where = f"moved to {import_folder.FAILED}/"
    except OSError as exc:
        where = f"could not be moved to {import_folder.FAILED}/ ({exc})"
    ctx.error(f"{name} was not imported: {reason} It was {where}; nothing of it was kept.")
    return {"file": name, "error": reason[:500]}


def _shown(base, path) -> str:
    """The folder as the log shows it: relative to the import directory."""
    relative = os.path.relpath(path, os.path.realpath(base))
    return "the import directory" if relative == "." else f"“{relative}” in the import directory"


IMPORT = register(JobType(
    key=KEY,
    label="Import data",
    run=run_import,
    params=ImportParams,
    user_creatable=True,
    queue="import",
    description="Imports CDISC ODM 1.3 clinical data files from the import directory into the job's domain.",
    extra={"default_plan": {"kind": "interval", "every": 15, "unit": "minutes"}},
))
