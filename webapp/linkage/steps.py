"""The match and group steps: the project's records in and out of the linkage engine
(matching.find_matches, grouping.group_ids), which works on Arrow tables with Splink on DuckDB."""
import pyarrow as pa
from sqlalchemy import delete, func, insert, select, update

from webapp.extensions import db
from webapp.linkage.normalise import normalise_name
from webapp.models.linkage import Envelope, LinkageMatch, LinkageRecord
from webapp.models.settings import get_setting

BATCH = 5000  # rows an INSERT or UPDATE statement carries


def _records(where) -> pa.Table:
    """Records as the engine reads them: names normalised; date, sex and postcode as loaded."""
    rows = db.session.execute(select(LinkageRecord.id, LinkageRecord.first_name, LinkageRecord.surname,
                                     LinkageRecord.dob, LinkageRecord.sex, LinkageRecord.postcode).where(where))
    ids, first, last, dob, sex, postcode = [], [], [], [], [], []
    for row in rows:
        ids.append(row.id)
        first.append(normalise_name(row.first_name))
        last.append(normalise_name(row.surname))
        dob.append(row.dob)
        sex.append(row.sex or "")
        postcode.append(row.postcode or "")
    return pa.table({"record_id": pa.array(ids, pa.int64()), "first_name": first, "surname": last,
                     "dob": pa.array(dob, pa.string()), "sex": sex, "postcode": postcode})


def settings():
    from webapp.linkage.matching import MatchSettings

    return MatchSettings(threshold=float(get_setting("linkage_threshold")), train=bool(get_setting("linkage_train")),
                         backend=str(get_setting("linkage_backend")))


def match(ctx, envelope: Envelope):
    """Pairs of the envelope's records with each other and with the project's earlier records.
    Earlier pairs are not looked at again; a retried match replaces what the failed one wrote."""
    from webapp.linkage.matching import find_matches

    new = _records(LinkageRecord.envelope_id == envelope.id)
    existing = _records((LinkageRecord.project_id == envelope.project_id) & (LinkageRecord.envelope_id != envelope.id))
    chosen = settings()
    ctx.info(f"Matching {new.num_rows} new records with {existing.num_rows} earlier ones of the project "
             f"(threshold {chosen.threshold:g}, {'trained' if chosen.train else 'fixed'} parameters).")
    ctx.progress(10, "comparing")
    pairs = find_matches(new, existing, chosen, log=ctx.info)
    db.session.execute(delete(LinkageMatch).where(LinkageMatch.envelope_id == envelope.id))
    rows = [{"project_id": envelope.project_id, "envelope_id": envelope.id, "record_l": left, "record_r": right,
             "probability": probability}
            for left, right, probability in zip(pairs.column("record_id_l").to_pylist(),
                                                pairs.column("record_id_r").to_pylist(),
                                                pairs.column("match_probability").to_pylist(), strict=True)]
    for start in range(0, len(rows), BATCH):
        db.session.execute(insert(LinkageMatch), rows[start:start + BATCH])
    db.session.commit()
    new_ids = set(new.column("record_id").to_pylist())
    with_earlier = sum(1 for row in rows if row["record_l"] not in new_ids or row["record_r"] not in new_ids)
    ctx.stat("records_new", new.num_rows)
    ctx.stat("records_earlier", existing.num_rows)
    ctx.stat("pairs", len(rows))
    ctx.stat("pairs_with_earlier_records", with_earlier)
    ctx.progress(100, f"{len(rows)} pairs")
    ctx.info(f"Found {len(rows)} matching pairs, {with_earlier} of them with earlier records.")


def group(ctx, envelope: Envelope):
    """Regroup the whole project: the connected components of all its matches."""
    changed, groups = regroup(envelope.project_id)
    ctx.stat("groups", groups)
    ctx.stat("records_regrouped", changed)
    in_envelope = db.session.scalar(select(func.count(func.distinct(LinkageRecord.group_id)))
                                    .where(LinkageRecord.envelope_id == envelope.id))
    ctx.stat("groups_of_envelope", in_envelope)
    ctx.info(f"The project has {groups} groups; {changed} records changed group; "
             f"the envelope's records are in {in_envelope} groups.")


def regroup(project_id: int, commit: bool = True) -> tuple[int, int]:
    """Give every record of the project its group id (the smallest record id of its connected
    component); writes only the records whose group changed. Returns (records changed, groups).
    Also what a rollback calls, so the groups come back exactly as they were (with commit=False:
    the rollback commits its deletes and the regrouping together)."""
    from webapp.linkage.grouping import group_ids

    current = dict(db.session.execute(select(LinkageRecord.id, LinkageRecord.group_id)
                                      .where(LinkageRecord.project_id == project_id)).all())
    pairs = db.session.execute(select(LinkageMatch.record_l, LinkageMatch.record_r)
                               .where(LinkageMatch.project_id == project_id)).all()
    table = pa.table({"record_id_l": pa.array([p[0] for p in pairs], pa.int64()),
                      "record_id_r": pa.array([p[1] for p in pairs], pa.int64()),
                      "match_probability": pa.array([1.0] * len(pairs), pa.float64())})
    wanted = group_ids(list(current), table)
    changes = [{"b_id": record_id, "b_group": group_id} for record_id, group_id in wanted.items()
               if current.get(record_id) != group_id]
    statement = update(LinkageRecord.__table__).where(LinkageRecord.__table__.c.id == db.bindparam("b_id")) \
        .values(group_id=db.bindparam("b_group"))
    for start in range(0, len(changes), BATCH):
        db.session.execute(statement, changes[start:start + BATCH])
    if commit:
        db.session.commit()
    return len(changes), len(set(wanted.values()))
