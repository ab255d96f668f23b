"""Creating, changing and deleting datasets: every input checked at once (name unique in its
domain, a domain the user may use, items of that domain), nothing written unless all pass, and
each change audited under the user who made it."""
import re
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.auth.permissions import domains_for_new_jobs
from webapp.datasets import queries
from webapp.datasets.queries import Place
from webapp.extensions import db
from webapp.jobs.editing import parse_id
from webapp.models import ClinicalOid, Dataset, DatasetItem, Domain, ItemDef
from webapp.models.audit import record

NAME_MAX = 120  # the column's length
DESCRIPTION_MAX = 2000
ITEMS_MAX = 2000  # places one dataset may select
_PLACE = re.compile(r"([1-9][0-9]{0,9})-([1-9][0-9]{0,9})-([1-9][0-9]{0,9})-([1-9][0-9]{0,9})")


class InvalidDataset(ValueError):
    """Problems with the posted dataset, by form field."""

    def __init__(self, errors: dict):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass
class DatasetInput:
    name: str = ""
    domain_id: str = ""
    description: str = ""
    items: list = field(default_factory=list)  # "event-form-group-item" ids, as the form posts them


def parse_places(values) -> tuple[list[Place], bool]:
    """The places named by the posted values, in order, once each; and whether any value was not
    a place at all."""
    places, bad = [], False
    for value in values:
        match = _PLACE.fullmatch(value or "")
        ids = [parse_id(part) for part in match.groups()] if match else [None]
        if None in ids:
            bad = True
            continue
        places.append(Place(*ids))
    return list(dict.fromkeys(places)), bad


def check(user, data: DatasetInput, dataset: Dataset | None = None) -> tuple[str, Domain, str, list[Place]]:
    """(name, domain, description, places) to store, or InvalidDataset with every problem."""
    errors = {}
    name = " ".join((data.name or "").split())
    description = (data.description or "").strip()
    domain_id = parse_id(data.domain_id)
    domain = db.session.scalar(domains_for_new_jobs(user).where(Domain.id == domain_id)) if domain_id else None
    if domain is None:
        errors["domain_id"] = "Choose one of the listed domains."
    if not name:
        errors["name"] = "A name is required."
    elif len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."
    elif domain is not None and _name_taken(name, domain.id, dataset):
        errors["name"] = f"{domain.name} already has a dataset named “{name}”: choose another name."
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = f"At most {DESCRIPTION_MAX} characters."
    places, bad = parse_places(data.items)
    if bad:
        errors["items"] = "Some chosen items could not be read; choose them again from the list."
    elif not places:
        errors["items"] = "Choose at least one item."
    elif len(places) > ITEMS_MAX:
        errors["items"] = f"At most {ITEMS_MAX} items in one dataset (you chose {len(places)})."
    elif domain is not None and not _all_of(domain.id, places):
        errors["items"] = f"Some chosen items are not items of {domain.name}: choose them from its list."
    if errors:
        raise InvalidDataset(errors)
    return name, domain, description, places


def _name_taken(name: str, domain_id: int, dataset: Dataset | None) -> bool:
    clash = select(Dataset.id).where(Dataset.domain_id == domain_id, func.lower(Dataset.name) == name.lower())
    if dataset is not None:
        clash = clash.where(Dataset.id != dataset.id)
    return db.session.scalar(clash) is not None


def _all_of(domain_id: int, places: list[Place]) -> bool:
    by_kind, items = queries.known_ids(domain_id)
    return all(p.event_id in by_kind["event"] and p.form_id in by_kind["form"] and p.group_id in by_kind["group"]
               and p.item_id in items for p in places)


def save(user, data: DatasetInput, dataset: Dataset | None = None) -> Dataset:
    """Create a dataset, or change `dataset`; audited. Raises InvalidDataset."""
    name, domain, description, places = check(user, data, dataset)
    before = None if dataset is None else settings_of(dataset)
    if dataset is None:
        dataset = Dataset(created_by_id=user.id)
        db.session.add(dataset)
    dataset.name, dataset.domain_id, dataset.description = name, domain.id, description
    wanted = set(places)
    kept = {place: item for place, item in zip(queries.places_of(dataset), dataset.items) if place in wanted}
    dataset.items = [kept.get(p) or DatasetItem(event_id=p.event_id, form_id=p.form_id, group_id=p.group_id,
                                                item_id=p.item_id) for p in places]
    try:
        db.session.flush()
    except IntegrityError:  # the same name saved by someone else a moment ago
        db.session.rollback()
        raise InvalidDataset({"name": f"{domain.name} already has a dataset named “{name}”: choose another name."}) \
            from None
    after = settings_of(dataset, domain)
    if before is None:
        record("create", "dataset", dataset, actor=user, after=after)
    elif before != after:
        record("edit", "dataset", dataset, actor=user, before=before, after=after)
    db.session.commit()
    return dataset


def delete(user, dataset: Dataset) -> None:
    """Delete the dataset. Its exported files stay in the archive (they keep its name); export
    jobs of it fail from then on, saying so."""
    before = settings_of(dataset)
    record("delete", "dataset", dataset, actor=user, before=before)
    db.session.delete(dataset)
    db.session.commit()


def settings_of(dataset: Dataset, domain: Domain | None = None) -> dict:
    """What the audit keeps of a dataset: its fields and its items as OID paths."""
    domain = domain or db.session.get(Domain, dataset.domain_id)
    oids = dict(db.session.execute(select(ClinicalOid.id, ClinicalOid.oid)
                                   .where(ClinicalOid.domain_id == dataset.domain_id)).all())
    items = dict(db.session.execute(select(ItemDef.id, ItemDef.oid).where(ItemDef.domain_id == dataset.domain_id)).all())
    paths = sorted(f"{oids.get(i.event_id)} / {oids.get(i.form_id)} / {oids.get(i.group_id)} / {items.get(i.item_id)}"
                   for i in dataset.items)
    return {"name": dataset.name, "domain": domain.name if domain else None, "description": dataset.description,
            "items": paths}
