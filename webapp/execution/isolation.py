"""Housekeeping and resync go through many items; one bad item (a job whose type is no
longer installed, a row that trips a bug) must never stop the pass for all the others."""
import logging

from webapp.extensions import db

log = logging.getLogger(__name__)


def each(items, step, what: str, rollback=True) -> int:
    """Apply step to every item, logging an item that fails (and rolling back its transaction,
    unless the steps only compute and the caller commits them all together); returns the sum
    of the counts (or True for one) that the steps returned."""
    done = 0
    for item in items:
        try:
            result = step(item)
            if isinstance(result, int):  # bool included
                done += result
        except Exception:
            log.exception("%s failed for %r; going on with the others", what, item)
            if rollback:
                db.session.rollback()
    return done
