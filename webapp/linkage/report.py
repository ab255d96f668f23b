"""The report step (SPEC 9, S4): two output files of the run, downloadable from it (the envelopes
page links them):

- `envelope-<id>-report.csv`: per step, its run, status and statistics, then every notification
  raised on the envelope, then the project's totals. One header for all rows, so a spreadsheet
  filters it: step, run, status, measure, count, detail.
- `project-<id>-groups-after-envelope-<id>.csv`: record_key → group_id for the WHOLE project (every
  envelope not rolled back), as the groups were after this envelope, ordered by group, so the members of a group are adjacent; streamed from the
  database, never held in memory. A group id is the smallest record id of its group: it stays
  when later envelopes add records to the group.

Both are written through `_writer`, which neutralises formula injection with the exports' rule
(webapp.formats.writers.neutralise): a record id, a header or a reason taken from an uploaded file
that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading apostrophe, so a
spreadsheet shows it as text instead of running it. Plain numbers are left alone.
"""
import csv

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.formats.writers import neutralise
from webapp.jobtypes.linkage import STEPS
from webapp.linkage.chain import runs_of, step_of
from webapp.models.linkage import Envelope, EnvelopeNotification, LinkageMatch, LinkageRecord

HEADER = ("step", "run", "status", "measure", "count", "detail")
STREAM_ROWS = 10_000


class _SafeWriter:
    """csv.writer whose every cell is neutralised (numbers and None as csv.writer writes them)."""

    def __init__(self, handle):
        self._writer = csv.writer(handle)

    def writerow(self, row):
        self._writer.writerow([_cell(cell) for cell in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def _cell(cell):
    return neutralise(cell) if isinstance(cell, str) else cell


def report(ctx, envelope: Envelope):
    with ctx.output_file(f"envelope-{envelope.id}-report.csv") as handle:
        writer = _SafeWriter(handle)
        writer.writerow(HEADER)
        writer.writerows(_step_rows(envelope))
        writer.writerows(_notification_rows(envelope))
        totals = _project_totals(envelope.project_id)
        writer.writerows(("project", "", "", measure, count, "") for measure, count in totals.items())
    ctx.progress(50, "report written")
    written = _write_groups(ctx, envelope.project_id, envelope.id)
    for measure, count in totals.items():
        ctx.stat(measure, count)
    ctx.stat("records_of_envelope", envelope.record_count)
    ctx.info(f"The project holds {totals['records']} records in {totals['groups']} groups "
             f"({totals['groups_of_several']} of two records or more); {written} rows in the groups file.")


def _step_rows(envelope: Envelope):
    """Each step's latest run (a retried step: the retry), with its statistics."""
    latest = {}
    for run in runs_of(envelope.id):
        if step_of(run) in STEPS[:-1]:
            latest[step_of(run)] = run
    for step in STEPS[:-1]:
        run = latest.get(step)
        if run is None:
            yield step, "", "not run", "", "", ""
            continue
        yield step, run.id, run.status_label, "", "", run.message
        for measure, count in (run.stats or {}).items():
            yield step, run.id, "", measure, count, ""


def _notification_rows(envelope: Envelope):
    notes = db.session.scalars(select(EnvelopeNotification).where(EnvelopeNotification.envelope_id == envelope.id)
                               .order_by(EnvelopeNotification.id))
    for note in notes:
        lines = f" (lines {note.first_lines}{'…' if note.count > len(note.first_lines.split(', ')) else ''})" \
            if note.first_lines else ""
        yield note.step, note.run_id or "", "", f"notification: {note.level}", note.count, note.reason + lines


def _project_totals(project_id: int) -> dict:
    records = db.session.scalar(select(func.count()).select_from(LinkageRecord)
                                .where(LinkageRecord.project_id == project_id))
    sizes = select(func.count().label("size")).where(LinkageRecord.project_id == project_id,
                                                     LinkageRecord.group_id.isnot(None)) \
        .group_by(LinkageRecord.group_id).subquery()
    groups, several = db.session.execute(select(func.count(), func.count().filter(sizes.c.size > 1))
                                         .select_from(sizes)).one()
    matches = db.session.scalar(select(func.count()).select_from(LinkageMatch)
                                .where(LinkageMatch.project_id == project_id))
    return {"records": records, "groups": groups, "groups_of_several": several, "matches": matches}


def _write_groups(ctx, project_id: int, envelope_id: int) -> int:
    rows = db.session.execute(select(LinkageRecord.record_key, LinkageRecord.group_id)
                              .where(LinkageRecord.project_id == project_id)
                              .order_by(LinkageRecord.group_id, LinkageRecord.id)
                              .execution_options(yield_per=STREAM_ROWS))
    written = 0
    # Named by the envelope too: it is the project's groups as they were after that envelope, and an
    # older envelope's link must not read as the groups of now.
    with ctx.output_file(f"project-{project_id}-groups-after-envelope-{envelope_id}.csv") as handle:
        writer = _SafeWriter(handle)
        writer.writerow(("record_key", "group_id"))
        for partition in rows.partitions():
            writer.writerows(partition)
            written += len(partition)
    return written
