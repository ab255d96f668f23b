"""The one pagination and sorting helper every list uses; its state lives in the URL."""
from dataclasses import dataclass
from math import ceil

from flask import request
from sqlalchemy import func, select

from webapp.extensions import db


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int
    sort: str
    direction: str

    @property
    def pages(self) -> int:
        return max(1, ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(query, sortable: dict, default_sort: str, default_direction="asc", per_page=25,
             tiebreak=None, keys_first=False) -> Page:
    """Sort `query` by the whitelisted column named in ?sort=, then cut ?page= out of it.

    `keys_first` (needs `tiebreak`, the primary key): sort and cut only the keys, then load the
    page's rows by key, so a far page of a large list does not sort whole joined rows."""
    sort = request.args.get("sort", default_sort)
    if sort not in sortable:
        sort = default_sort
    direction = request.args.get("dir", default_direction)
    direction = direction if direction in ("asc", "desc") else default_direction
    column = sortable[sort]
    ordered = query.order_by(column.desc() if direction == "desc" else column.asc())
    if tiebreak is not None:  # rows with equal sort keys keep one order across pages
        ordered = ordered.order_by(tiebreak)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    pages = max(1, ceil(total / per_page))
    try:
        page = min(max(1, int(request.args.get("page", 1))), pages)
    except ValueError:
        page = 1
    items = page_items(query, ordered, tiebreak, per_page, (page - 1) * per_page, keys_first) if total else []
    return Page(items, page, per_page, total, sort, direction)


def page_items(query, ordered, tiebreak, limit, offset=0, keys_first=False) -> list:
    if not keys_first:
        return db.session.scalars(ordered.limit(limit).offset(offset)).all()
    keys = db.session.scalars(ordered.with_only_columns(tiebreak).limit(limit).offset(offset)).all()
    rows = {getattr(item, tiebreak.key): item for item in db.session.scalars(query.where(tiebreak.in_(keys)))}
    return [rows[key] for key in keys if key in rows]
