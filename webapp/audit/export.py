"""The filtered audit list as CSV, written row by row while the database is read, so a long
history neither waits nor fills the memory before the first byte goes out."""
import csv
import io
import json

from sqlalchemy import select

from webapp.audit.diff import changes
from webapp.extensions import db
from webapp.models import AuditEvent, Domain

COLUMNS = ("id", "time_utc", "who", "action", "object_type", "object_id", "object_name", "domain", "run_id",
           "changes", "before", "after", "message")
BATCH = 500  # rows fetched from the database at a time

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such a
# cell gets a leading apostrophe, which spreadsheets show as text and do not evaluate.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _json(value) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _changes_text(event) -> str:
    parts = []
    for change in changes(event.before, event.after):
        parts.append(f"{change.field}: {'—' if change.before is None else change.before} → "
                     f"{'—' if change.after is None else change.after}")
    return "; ".join(parts)


def row_of(event, domain_names: dict) -> list[str]:
    values = (event.id, event.at.isoformat(), event.actor_name, event.action, event.object_type, event.object_id,
              event.object_name, domain_names.get(event.domain_id, ""), event.run_id, _changes_text(event),
              _json(event.before), _json(event.after), event.message)
    return [safe_cell(value) for value in values]


def csv_lines(query):
    """The header, then one CSV line per audit record of `query` (newest first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield "\ufeff" + flush()  # the byte order mark lets spreadsheets read the file as UTF-8
    domain_names = dict(db.session.execute(select(Domain.id, Domain.name)).all())
    ordered = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).execution_options(yield_per=BATCH)
    for count, event in enumerate(db.session.scalars(ordered), 1):
        writer.writerow(row_of(event, domain_names))
        if count % 100 == 0:
            yield flush()
    yield flush()
