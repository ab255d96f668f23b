"""What the jobs list's find box matches: text in a job's name, description, domain, type and
dataset, and fire times typed as a date (2026-11-22), a month (2026-11), a time of day (06:00)
or both (2026-11-22 06:00), read in the server's time zone like every time the console shows.

Fire times are stored as naive UTC. A date or a minute is one range of UTC instants. A time of
day is not: 06:00 in Amsterdam is 05:00 UTC in winter and 04:00 UTC in summer. So the zone's
history is cut into spans of one UTC offset each, and a time of day matches an instant whose
UTC minute of the day is the local one less the offset of the span the instant falls in. All of
it is plain SQL (ranges and the minute of the day), on SQLite and PostgreSQL alike, so finding
stays one query with its count and its pages.
"""
import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

FIND_MAX = 200  # characters of the find box that count
_WHEN = re.compile(r"(?:(?P<year>\d{4})-(?P<month>\d{1,2})(?:-(?P<day>\d{1,2}))?)?"
                   r"(?:(?:^|[ T])(?P<hour>\d{1,2}):(?P<minute>\d{2}))?")
SPAN_YEARS = 12  # years either side of today cut into exact offset spans; beyond, the edge spans go on


def like_pattern(text: str) -> str:
    """`%text%` for LIKE ... ESCAPE '\\', with %, _ and \\ in the text taken literally."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def fire_time_clause(text: str, columns, zone: ZoneInfo, today: date):
    """A WHERE clause: one of `columns` (naive-UTC datetimes) falls in the date, month, minute or
    time of day that `text` names in `zone`; None when the text names no such time."""
    match = _WHEN.fullmatch(text.strip())
    if not match or not (match["year"] or match["hour"]) or (match["year"] and match["hour"] and not match["day"]):
        return None
    try:
        if match["year"]:
            start, end = _local_range(match, zone)
            return or_(*[and_(column >= start, column < end) for column in columns])
        hour, minute = int(match["hour"]), int(match["minute"])
        if hour > 23 or minute > 59:
            return None
    except (ValueError, OverflowError):  # 2026-13-01, 2026-02-30, 0000-01-01
        return None
    return or_(*[_time_of_day(column, hour * 60 + minute, zone, today) for column in columns])


def _local_range(match, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of the local month, day or minute the match names."""
    year, month = int(match["year"]), int(match["month"])
    if match["day"] is None:
        first = datetime(year, month, 1)
        after = datetime(year + month // 12, month % 12 + 1, 1)
    else:
        first = datetime(year, month, int(match["day"]))
        after = first + timedelta(days=1)
        if match["hour"] is not None:
            first = first.replace(hour=int(match["hour"]), minute=int(match["minute"]))
            after = first + timedelta(minutes=1)
    return first.replace(tzinfo=zone).astimezone(timezone.utc), after.replace(tzinfo=zone).astimezone(timezone.utc)


def _time_of_day(column, local_minute: int, zone: ZoneInfo, today: date):
    utc_minute = minute_of_day(column)
    spans = offset_spans(zone.key, today.year - SPAN_YEARS, today.year + SPAN_YEARS)
    if len(spans) == 1:  # one offset all along (UTC, or a zone without changes): one span, unbounded
        return utc_minute == (local_minute - spans[0][2]) % 1440
    by_offset = {}
    for start, end, offset in spans:  # of several spans each has at least one bound
        within = [bound for bound in (None if start is None else column >= start,
                                      None if end is None else column < end) if bound is not None]
        by_offset.setdefault(offset, []).append(and_(*within))
    return or_(*[and_(utc_minute == (local_minute - offset) % 1440, or_(*ranges))
                 for offset, ranges in by_offset.items()])


@lru_cache(maxsize=16)
def offset_spans(zone_key: str, first_year: int, last_year: int) -> tuple:
    """(start, end, UTC offset in minutes) of each stretch of one offset of the zone from
    first_year to last_year; the first starts at None (open) and the last ends at None."""
    zone = ZoneInfo(zone_key)

    def offset(at: datetime) -> int:
        return int(at.astimezone(zone).utcoffset().total_seconds() // 60)

    spans, start = [], None
    day = datetime(first_year, 1, 1, tzinfo=timezone.utc)
    last = datetime(last_year + 1, 1, 1, tzinfo=timezone.utc)
    current = offset(day)
    while day < last:
        following = day + timedelta(days=1)
        if offset(following) != current:
            low, high = day, following  # the change is in (low, high]: bisect to the minute
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    middle = low + timedelta(minutes=1)
                low, high = (middle, high) if offset(middle) == current else (low, middle)
            spans.append((start, high, current))
            start, current = high, offset(high)
        day = following
    spans.append((start, None, current))
    return tuple(spans)


class minute_of_day(FunctionElement):  # noqa: N801  (an SQL function, named as one)
    """The minute of the day (0-1439) of a naive datetime column."""

    type = Integer()
    name = "minute_of_day"
    inherit_cache = True


@compiles(minute_of_day)
def _minute_of_day_sqlite(element, compiler, **kw):
    column = compiler.process(list(element.clauses)[0], **kw)
    return f"(CAST(strftime('%H', {column}) AS INTEGER) * 60 + CAST(strftime('%M', {column}) AS INTEGER))"


@compiles(minute_of_day, "postgresql")
def _minute_of_day_postgresql(element, compiler, **kw):
    # date_part gives a double; EXTRACT a numeric, about twice as slow over 10,000 jobs.
    column = compiler.process(list(element.clauses)[0], **kw)
    return f"(date_part('hour', {column}) * 60 + date_part('minute', {column}))"
