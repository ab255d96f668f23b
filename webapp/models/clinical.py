"""Clinical data as CDISC ODM 1.3 ClinicalData carries it, per domain (a study or a site).

One value per key: (subject, study event and its repeat key, form, item group and its repeat key,
item). Subjects, item definitions and the event, form and item group OIDs are stored once per
domain; each item group instance of a subject is a record; a value is (record, item, value).
So the table that gets hundreds of thousands of rows a second is narrow and keyed by two
integers, and an import or export maps keys to and from ids in memory.

Datasets (S0 "Define Dataset") are named selections of a domain's items, by event, form, item
group and item; exports write a dataset's values."""
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models.accounts import Domain, User
from webapp.models.types import UTCDateTime, utcnow

OID_MAX = 100  # characters of an OID, a subject key or a name kept from a file
REPEAT_MAX = 40  # characters of a repeat key


class OidKind(StrEnum):
    EVENT = "event"
    FORM = "form"
    GROUP = "group"


class Subject(db.Model):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("domain_id", "subject_key", name="uq_subjects_domain_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # No cascade: a domain that holds clinical data cannot be deleted by accident.
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    subject_key: Mapped[str] = mapped_column(String(OID_MAX))


class ClinicalOid(db.Model):
    """A study event, form or item group OID of a domain."""

    __tablename__ = "clinical_oids"
    __table_args__ = (UniqueConstraint("domain_id", "kind", "oid", name="uq_clinical_oids_domain_kind_oid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    kind: Mapped[str] = mapped_column(String(10))
    oid: Mapped[str] = mapped_column(String(OID_MAX))
    name: Mapped[str] = mapped_column(String(200), default="")  # from the file's metadata, when it has them


class ItemDef(db.Model):
    """An item of a domain: from the metadata of a file (Study/MetaDataVersion/ItemDef) or, when
    a file carries none, from the values it imports (then with the OID as its name)."""

    __tablename__ = "item_defs"
    __table_args__ = (UniqueConstraint("domain_id", "oid", name="uq_item_defs_domain_oid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    oid: Mapped[str] = mapped_column(String(OID_MAX))
    name: Mapped[str] = mapped_column(String(200), default="")
    data_type: Mapped[str] = mapped_column(String(20), default="text")
    length: Mapped[int | None]  # the longest value the item takes, when the metadata say


class ClinicalRecord(db.Model):
    """One item group instance of a subject: the key of ODM's ItemData above the item (subject,
    study event and its repeat key, form, item group and its repeat key). Values hang on it."""

    __tablename__ = "clinical_records"
    __table_args__ = (
        # One record per key; the order an export reads (subject by subject).
        UniqueConstraint("subject_id", "event_id", "event_repeat", "form_id", "group_id", "group_repeat",
                         name="uq_clinical_records_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys, as on item_values: each is a trigger a row on PostgreSQL (0.84 s of a 1.06 s
    # COPY of 60,000 records); the loader makes the ids it writes, and a domain holding clinical data
    # cannot be deleted (admin/domains.py), so nothing they name goes away under them.
    subject_id: Mapped[int]
    event_id: Mapped[int]
    event_repeat: Mapped[str] = mapped_column(String(REPEAT_MAX))
    form_id: Mapped[int]
    group_id: Mapped[int]
    group_repeat: Mapped[str] = mapped_column(String(REPEAT_MAX))


class ItemValue(db.Model):
    """An item's value in a record: two integers of key. No foreign keys on purpose: the import
    writes hundreds of thousands of rows a second, and on PostgreSQL each foreign key is a
    trigger a row (it cost three times the insert); the loader makes the ids it writes."""

    __tablename__ = "item_values"
    # SQLite: the primary key is the table (one B-tree a row to write, not two: a quarter less
    # work an imported value).
    __table_args__ = {"sqlite_with_rowid": False}

    record_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    item_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[str | None] = mapped_column(Text)  # None: the file said IsNull="Yes" (no Value)


class ExportFormat(StrEnum):
    CSV = "csv"
    TSV = "tsv"
    JSON = "json"
    ODM = "odm"


FORMAT_LABELS = {ExportFormat.CSV: "CSV", ExportFormat.TSV: "Tab-separated text", ExportFormat.JSON: "JSON",
                 ExportFormat.ODM: "ODM 1.3 XML"}
FORMAT_EXTENSIONS = {ExportFormat.CSV: "csv", ExportFormat.TSV: "tsv", ExportFormat.JSON: "json",
                     ExportFormat.ODM: "xml"}


class Dataset(db.Model):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_datasets_domain_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    domain: Mapped[Domain] = relationship()
    created_by: Mapped[User | None] = relationship()
    items: Mapped[list["DatasetItem"]] = relationship(back_populates="dataset", cascade="all, delete-orphan",
                                                      passive_deletes=True)

    def __repr__(self):
        return f"<Dataset {self.id} {self.name}>"


class DatasetItem(db.Model):
    """One selected item of a dataset, where it is collected: event, form and item group."""

    __tablename__ = "dataset_items"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("clinical_oids.id"), primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("clinical_oids.id"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("clinical_oids.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item_defs.id"), primary_key=True)

    dataset: Mapped[Dataset] = relationship(back_populates="items")
