"""What the dataset pages read: the list, what a domain holds to choose items from, a dataset's
items and the subjects it covers, its exports in the archive and the jobs that export it."""
from dataclasses import dataclass, field

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import selectinload

from webapp.auth.permissions import archive_query, datasets_query, jobs_query
from webapp.extensions import db
from webapp.jobs.finding import FIND_MAX, like_pattern
from webapp.jobtypes.export_dataset import KEY as EXPORT_KEY
from webapp.models import (ClinicalOid, ClinicalRecord, Dataset, DatasetItem, Domain, ItemDef, ItemValue, Job,
                           RunFile, Subject)
from webapp.models.clinical import OidKind

LAYOUT_MAX = 3000  # (event, form, item group, item) places a dataset form offers at most
RECENT_FILES = 10  # exports a dataset's page lists (the archive has them all)


# --- the list -------------------------------------------------------------------------------------

@dataclass
class ListFilters:
    find: str = ""
    domain: int | None = None

    @classmethod
    def from_args(cls, args, parse_id) -> "ListFilters":
        return cls(find=" ".join(args.get("q", "").split())[:FIND_MAX], domain=parse_id(args.get("domain")))

    def args(self) -> dict:
        return {key: value for key, value in (("q", self.find), ("domain", self.domain)) if value}


ITEM_COUNT = (select(func.count()).select_from(DatasetItem).where(DatasetItem.dataset_id == Dataset.id)
              .correlate(Dataset).scalar_subquery())
SORTS = {"name": func.lower(Dataset.name), "domain": func.lower(Domain.name), "items": ITEM_COUNT,
         "updated": Dataset.updated_at}


def list_query(user, filters: ListFilters):
    """The datasets the user may see, found by name or description, in a domain or all."""
    query = datasets_query(user).join(Domain, Domain.id == Dataset.domain_id).options(selectinload(Dataset.domain))
    if filters.find:
        pattern = like_pattern(filters.find.lower())
        query = query.where(or_(func.lower(Dataset.name).like(pattern, escape="\\"),
                                func.lower(Dataset.description).like(pattern, escape="\\")))
    if filters.domain:
        query = query.where(Dataset.domain_id == filters.domain)
    return query


def item_counts(dataset_ids) -> dict[int, int]:
    """Items of each of the datasets, in one query (for a page of the list)."""
    return dict(db.session.execute(select(DatasetItem.dataset_id, func.count()).where(
        DatasetItem.dataset_id.in_(dataset_ids)).group_by(DatasetItem.dataset_id)).all()) if dataset_ids else {}


# --- what a domain holds ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Place:
    """An item where a domain collects it: event, form and item group; the form's value of one
    dataset item, `e-f-g-i` (ids)."""

    event_id: int
    form_id: int
    group_id: int
    item_id: int

    @property
    def value(self) -> str:
        return f"{self.event_id}-{self.form_id}-{self.group_id}-{self.item_id}"


@dataclass
class Group:
    """An item group of a form at an event, with its items: one branch of the form's tree."""

    event: ClinicalOid
    form: ClinicalOid
    group: ClinicalOid
    items: list = field(default_factory=list)  # (Place, ItemDef)


@dataclass
class Layout:
    groups: list  # of Group, by event, form and group OID
    places: int
    cut: bool  # more places than LAYOUT_MAX: the rest are not offered


def held_places(domain_id: int, limit: int = LAYOUT_MAX) -> list[Place]:
    """The places where the domain holds values: one scan of its values (about a second for three
    million), so it is read only for the form that offers them."""
    rows = db.session.execute(
        select(ClinicalRecord.event_id, ClinicalRecord.form_id, ClinicalRecord.group_id, ItemValue.item_id)
        .join(Subject, Subject.id == ClinicalRecord.subject_id)
        .join(ItemValue, ItemValue.record_id == ClinicalRecord.id)
        .where(Subject.domain_id == domain_id).distinct().limit(limit + 1)).all()
    return [Place(*row) for row in rows]


def layout(domain_id: int | None, chosen=()) -> Layout:
    """The tree a dataset form offers: where the domain holds values, and the places already
    chosen (a dataset keeps an item the data no longer has until it is unticked)."""
    if domain_id is None:
        return Layout([], 0, False)
    held = held_places(domain_id)
    cut = len(held) > LAYOUT_MAX
    places = list(dict.fromkeys([*chosen, *held[:LAYOUT_MAX]]))
    return Layout(tree(domain_id, places), len(places), cut)


def tree(domain_id: int, places: list[Place]) -> list[Group]:
    """The places as branches: event, form and item group, each with its items by OID."""
    oids = {row.id: row for row in db.session.scalars(select(ClinicalOid).where(ClinicalOid.domain_id == domain_id))}
    items = {row.id: row for row in db.session.scalars(select(ItemDef).where(ItemDef.domain_id == domain_id))}
    groups: dict[tuple, Group] = {}
    for place in places:
        parts = (oids.get(place.event_id), oids.get(place.form_id), oids.get(place.group_id), items.get(place.item_id))
        if None in parts:
            continue  # not of this domain: never offered
        key = (place.event_id, place.form_id, place.group_id)
        if key not in groups:
            groups[key] = Group(*parts[:3])
        groups[key].items.append((place, parts[3]))
    for group in groups.values():
        group.items.sort(key=lambda pair: pair[1].oid)
    return sorted(groups.values(), key=lambda g: (g.event.oid, g.form.oid, g.group.oid))


def known_ids(domain_id: int) -> tuple[dict[str, set[int]], set[int]]:
    """The domain's event, form and item group ids by kind, and its item ids: what a posted
    place may name."""
    by_kind = {kind.value: set() for kind in OidKind}
    for id_, kind in db.session.execute(select(ClinicalOid.id, ClinicalOid.kind)
                                        .where(ClinicalOid.domain_id == domain_id)):
        by_kind.setdefault(kind, set()).add(id_)
    items = set(db.session.scalars(select(ItemDef.id).where(ItemDef.domain_id == domain_id)))
    return by_kind, items


def places_of(dataset: Dataset) -> list[Place]:
    return [Place(i.event_id, i.form_id, i.group_id, i.item_id) for i in dataset.items]


# --- a dataset's page -----------------------------------------------------------------------------

def subjects_covered(dataset: Dataset) -> int:
    """Subjects with at least one value of the dataset. The inner query stops at a subject's first
    value; OFFSET 0 keeps PostgreSQL from turning it into a join over every value of the domain
    (2.5 s against 0.5 s for 28,000 subjects)."""
    chosen = DatasetItem
    has_value = (select(1).select_from(ClinicalRecord)
                 .join(chosen, and_(chosen.dataset_id == dataset.id, chosen.event_id == ClinicalRecord.event_id,
                                    chosen.form_id == ClinicalRecord.form_id,
                                    chosen.group_id == ClinicalRecord.group_id))
                 .join(ItemValue, and_(ItemValue.record_id == ClinicalRecord.id, ItemValue.item_id == chosen.item_id))
                 .where(ClinicalRecord.subject_id == Subject.id).offset(0))
    return db.session.scalar(select(func.count()).select_from(Subject)
                             .where(Subject.domain_id == dataset.domain_id, exists(has_value)))


def recent_files(user, dataset: Dataset) -> list[RunFile]:
    return db.session.scalars(archive_query(user).where(RunFile.dataset_id == dataset.id)
                              .options(selectinload(RunFile.job))
                              .order_by(RunFile.created_at.desc(), RunFile.id.desc()).limit(RECENT_FILES)).all()


def export_jobs(user, dataset: Dataset) -> list[Job]:
    """The live export jobs the user sees that export this dataset (parameters are JSON: the few
    export jobs of the domain are read and looked at)."""
    jobs = db.session.scalars(jobs_query(user).where(Job.job_type == EXPORT_KEY, Job.domain_id == dataset.domain_id)
                              .order_by(Job.name)).all()
    return [job for job in jobs if str((job.params or {}).get("dataset")) == str(dataset.id)]
