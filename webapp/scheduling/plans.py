"""When scheduled background jobs fire.

A *plan* is the small JSON dict stored with a job that says when it runs.
``parse_plan()`` validates such a dict (as it arrives from the DB or a form)
and returns a ``Plan``; ``Plan.next_after()`` answers "when is the first run
strictly later than this instant?".

The module is pure: no I/O, no global state, no work at import time.

Time rules
----------
* Every datetime passed in or returned is timezone-aware; results are UTC
  with whole seconds.
* interval / poll count absolute time from an anchor instant, so daylight
  saving changes do not affect them.
* period / daily / cron are local wall-clock times in the ``ZoneInfo`` the
  caller passes.  Wall times are converted with ``fold=0``: a wall time
  skipped by a spring-forward jump fires at the shifted instant fold=0 gives
  (02:30 -> 03:30 summer time), and a wall time that occurs twice when clocks
  fall back fires once, on its first occurrence.  When two wall times land on
  the same instant (02:30 and 03:30 on a spring-forward day) the job fires
  once: a fire time is only ever returned if it is strictly later than
  ``after``.
* Python's calendar runs from year 1 to year 9999: a plan has no fire time
  beyond it (``next_after`` answers None, it never raises for a date).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import MAXYEAR, datetime, time, timedelta, timezone
from typing import Any, Callable, ClassVar, Iterator
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter
from dateutil.relativedelta import relativedelta

__all__ = [
    "KINDS",
    "AutomaticPlan",
    "CronPlan",
    "DailyPlan",
    "DisabledPlan",
    "IntervalPlan",
    "PeriodPlan",
    "Plan",
    "PlanError",
    "PollPlan",
    "TEXT_LIMITS",
    "parse_plan",
    "upcoming",
]

KINDS: tuple[str, ...] = ("automatic", "interval", "period", "daily", "cron", "poll", "disabled")

UTC = timezone.utc
MAX_EVERY = 10_000
MIN_POLL_SECONDS, MAX_POLL_SECONDS, DEFAULT_POLL_SECONDS = 1, 300, 60
INTERVAL_UNITS = ("minutes", "hours")
REPEATS = ("daily", "weekly", "monthly")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# The longest text each field may hold (a form or an API client can send anything).
TEXT_LIMITS = {"every": 20, "seconds": 20, "start": 40, "anchor": 64, "expression": 200, "times": 400}
MAX_TIMES = 48  # times of day in a daily plan: every half hour

# Wall-clock searches normally look at one or two candidates.  They only skip
# more while stepping through a repeated fall-back hour (at most one candidate
# per minute of it), so this limit is a safety net against bugs, not a tuning knob.
_MAX_CANDIDATES = 10_000


class PlanError(ValueError):
    """A plan dict is invalid; ``errors`` maps form field name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors.items()))


# --------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------


class Plan:
    """Base class; each kind of plan is a frozen dataclass below."""

    kind: ClassVar[str]

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """First fire time strictly later than ``after`` (aware UTC), or None."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The stored (JSON) form, as accepted by ``parse_plan``."""
        return {"kind": self.kind}

    def describe(self) -> str:
        """Short human text for lists."""
        return self.kind


@dataclass(frozen=True)
class DisabledPlan(Plan):
    kind: ClassVar[str] = "disabled"

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        return None


@dataclass(frozen=True)
class AutomaticPlan(Plan):
    """The schedule the job type declares in code; stored only as {"kind": "automatic"}."""

    kind: ClassVar[str] = "automatic"
    resolved: Plan

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        return self.resolved.next_after(after, tz)

    def describe(self) -> str:
        return f"automatic: {self.resolved.describe()}"


class _FixedStepPlan(Plan):
    """Fires at anchor, anchor + step, anchor + 2*step ... in absolute time."""

    anchor: datetime  # aware UTC, whole seconds

    @property
    def step(self) -> timedelta:
        raise NotImplementedError

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        after = _as_utc(after)
        if after < self.anchor:
            return self.anchor
        # timedelta // timedelta is an int: the number of whole steps already
        # elapsed, so no loop is needed however far `after` is from the anchor.
        steps_done = (after - self.anchor) // self.step
        try:
            return self.anchor + (steps_done + 1) * self.step
        except OverflowError:  # beyond year 9999
            return None


@dataclass(frozen=True, kw_only=True)
class IntervalPlan(_FixedStepPlan):
    kind: ClassVar[str] = "interval"
    every: int
    unit: str  # "minutes" or "hours"
    anchor: datetime

    @property
    def step(self) -> timedelta:
        return timedelta(**{self.unit: self.every})

    def to_dict(self) -> dict:
        return {"kind": self.kind, "every": self.every, "unit": self.unit, "anchor": self.anchor.isoformat()}

    def describe(self) -> str:
        unit = self.unit if self.every != 1 else self.unit[:-1]
        return f"every {self.every} {unit}"


@dataclass(frozen=True, kw_only=True)
class PollPlan(_FixedStepPlan):
    kind: ClassVar[str] = "poll"
    seconds: int
    anchor: datetime

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "seconds": self.seconds, "anchor": self.anchor.isoformat()}

    def describe(self) -> str:
        return f"every {self.seconds} s (poll)"


class _WallClockPlan(Plan):
    """A plan whose fire times are local wall-clock times in the caller's zone."""

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        """Naive local wall times of this plan strictly later than naive ``start``, ascending."""
        raise NotImplementedError

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        after = _as_utc(after)
        try:
            start = _search_start(after, tz)
        except OverflowError:  # `after` reads beyond year 9999 on this zone's clock
            return None
        return _first_fire(_within_calendar(self._candidates(start)), after, tz)


_PERIOD_STEPS = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


@dataclass(frozen=True, kw_only=True)
class PeriodPlan(_WallClockPlan):
    kind: ClassVar[str] = "period"
    start: datetime  # naive local wall time
    repeat: str  # "daily", "weekly" or "monthly"

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        for k in itertools.count(self._index_near(start)):
            wall = self._nth(k)
            if wall > start:
                yield wall

    def _nth(self, k: int) -> datetime:
        if self.repeat == "monthly":
            if self.start.year + (self.start.month - 1 + k) // 12 > MAXYEAR:
                raise OverflowError("beyond year 9999")
            # Always from the start, never cumulatively, so Jan 31 gives
            # Feb 28 and then Mar 31 again (relativedelta clamps the day).
            return self.start + relativedelta(months=k)
        # Naive arithmetic is wall-clock arithmetic: 08:00 stays 08:00 across DST.
        return self.start + k * _PERIOD_STEPS[self.repeat]

    def _index_near(self, start: datetime) -> int:
        """An index whose fire is at or before wall time ``start`` (or 0), so only a step or two remain."""
        if start < self.start:
            return 0
        if self.repeat == "monthly":
            # Fires with a smaller index fall in an earlier calendar month.
            return (start.year - self.start.year) * 12 + start.month - self.start.month
        return (start - self.start) // _PERIOD_STEPS[self.repeat]

    def to_dict(self) -> dict:
        spec = "minutes" if self.start.second == 0 else "seconds"
        return {"kind": self.kind, "start": self.start.isoformat(timespec=spec), "repeat": self.repeat}

    def describe(self) -> str:
        return f"{self.repeat} from {self.start:%Y-%m-%d %H:%M}"


@dataclass(frozen=True, kw_only=True)
class DailyPlan(_WallClockPlan):
    kind: ClassVar[str] = "daily"
    days: tuple[int, ...]  # Monday=0 .. Sunday=6, sorted, unique
    times: tuple[time, ...]  # sorted, unique, whole minutes

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        for offset in itertools.count():
            day = start.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            for at in self.times:
                wall = datetime.combine(day, at)
                if wall > start:
                    yield wall

    def to_dict(self) -> dict:
        return {"kind": self.kind, "days": list(self.days), "times": [_hhmm(t) for t in self.times]}

    def describe(self) -> str:
        days = _describe_days(self.days)
        times = ", ".join(_hhmm(t) for t in self.times)
        return f"daily {days} at {times}" if days else f"daily at {times}"


@dataclass(frozen=True, kw_only=True)
class CronPlan(_WallClockPlan):
    kind: ClassVar[str] = "cron"
    expression: str  # five fields, single-space separated

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        # croniter works on NAIVE datetimes here, i.e. on local wall time;
        # _first_fire converts each match to UTC.
        matches = croniter(self.expression, start)
        while True:
            try:
                yield matches.get_next(datetime)
            except CroniterBadDateError:  # no further match within croniter's search window
                return
            except ValueError:  # croniter's "year 10000 is out of range": the calendar ends
                return

    def to_dict(self) -> dict:
        return {"kind": self.kind, "expression": self.expression}

    def describe(self) -> str:
        return f"cron {self.expression}"


# --------------------------------------------------------------------------
# Wall-clock search (the daylight-saving logic lives here)
# --------------------------------------------------------------------------


def _within_calendar(candidates: Iterator[datetime]) -> Iterator[datetime]:
    """The candidates up to the end of year 9999, where datetime arithmetic overflows."""
    try:
        yield from candidates
    except OverflowError:
        return


def _search_start(after: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall time after which candidates must be examined.

    Normally the local wall time of ``after``.  But just after a spring-forward
    jump, wall times inside the skipped gap fire *later* than ``after`` even
    though they read earlier on the clock (fold=0 turns 02:30 into 03:30), so
    also read ``after`` with the UTC offset in force a day earlier and start
    from whichever wall time is earlier.
    """
    if after.year == 1 and after.month == 1 and after.day <= 2:
        # Reading the first day of the calendar on a clock behind UTC overflows; every
        # wall time of year 1 is a candidate then (the conversion below drops those before `after`).
        return datetime.min
    local = after.astimezone(tz).replace(tzinfo=None)
    earlier_offset = (after - timedelta(days=1)).astimezone(tz).utcoffset()
    with_earlier_offset = (after + earlier_offset).replace(tzinfo=None)
    return min(local, with_earlier_offset)


def _first_fire(candidates: Iterator[datetime], after: datetime, tz: ZoneInfo) -> datetime | None:
    """Earliest instant later than ``after`` among ascending naive wall-time candidates."""
    best: datetime | None = None
    horizon: datetime | None = None
    for checked, wall in enumerate(candidates):
        if horizon is not None and wall >= horizon:
            break
        if checked >= _MAX_CANDIDATES:
            raise RuntimeError("plan search did not converge; this is a bug in plans.py")
        try:
            instant = _wall_to_utc(wall, tz)
        except OverflowError:  # a wall time of year 1 or 9999 that is in year 0 or 10000 in UTC
            continue
        if instant <= after:
            # e.g. the repeated fall-back hour (fold=0 maps it to its first
            # pass), or a second wall time landing on an instant already used.
            continue
        if best is None:
            best = instant
            # A wall time inside a spring-forward gap fires `gap` later than it
            # reads, so candidates reading up to that much later may still fire
            # earlier.  Reading the instant back gives exactly that horizon;
            # for an ordinary wall time it is the wall time itself (stop now).
            horizon = instant.astimezone(tz).replace(tzinfo=None)
        else:
            best = min(best, instant)
    return best


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _hhmm(at: time) -> str:
    return f"{at.hour:02d}:{at.minute:02d}"


def _describe_days(days: tuple[int, ...]) -> str:
    """'' for every day, 'Mon–Fri' for a run of three or more, else 'Mon, Wed'."""
    if len(days) == 7:
        return ""
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{DAY_NAMES[run[0]]}–{DAY_NAMES[run[-1]]}")
        else:
            parts.extend(DAY_NAMES[day] for day in run)
    return ", ".join(parts)


# --------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------


def parse_plan(data: dict, *, automatic: dict | None = None, now: datetime | None = None) -> Plan:
    """Validate a stored/form plan dict and build the Plan.

    ``automatic`` is the plan dict the job type declares (used for kind
    "automatic").  ``now`` (aware) supplies the anchor of interval/poll plans
    that arrive without one, i.e. when a job is being saved.
    Raises PlanError with every problem found, keyed by field name.
    """
    if not isinstance(data, dict):
        raise PlanError({"kind": 'A plan must be an object with a "kind".'})
    kind = data.get("kind")
    if kind in (None, ""):
        raise PlanError({"kind": "A schedule kind is required."})
    if kind == "automatic":
        return _parse_automatic(automatic, now)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise PlanError({"kind": f"Unknown schedule kind {_quoted(kind)}; choose one of: {', '.join(KINDS)}."})
    return parser(_Fields(data, now))


def upcoming(plan: Plan, after: datetime, tz: ZoneInfo, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times after ``after``, strictly increasing."""
    fires: list[datetime] = []
    while len(fires) < count:
        following = plan.next_after(after, tz)
        if following is None:
            break
        fires.append(following)
        after = following
    return fires


class _Invalid(Exception):
    """Raised by a field check; the message is shown next to the form field."""


class _Fields:
    """Reads the fields of one plan dict, collecting all problems so a form can show them together."""

    def __init__(self, data: dict, now: datetime | None):
        self.data = data
        self.now = now
        self.errors: dict[str, str] = {}

    def get(self, name: str, check: Callable[..., Any], *args: Any) -> Any:
        value = self.data.get(name)
        if isinstance(value, str) and len(value) > TEXT_LIMITS.get(name, len(value)):
            self.errors[name] = f"At most {TEXT_LIMITS[name]} characters."
            return None
        try:
            return check(value, *args)
        except _Invalid as exc:
            self.errors[name] = str(exc)
            return None

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise PlanError(self.errors)


def _parse_automatic(declared: dict | None, now: datetime | None) -> Plan:
    if declared is None:
        raise PlanError({"kind": "this job type declares no automatic schedule"})
    if isinstance(declared, dict) and declared.get("kind") == "automatic":
        raise PlanError({"kind": 'the declared automatic schedule cannot itself be "automatic"'})
    return AutomaticPlan(resolved=parse_plan(declared, now=now))


def _parse_disabled(fields: _Fields) -> Plan:
    return DisabledPlan()


def _parse_interval(fields: _Fields) -> Plan:
    every = fields.get("every", _check_every)
    unit = fields.get("unit", _check_choice, INTERVAL_UNITS)
    anchor = fields.get("anchor", _check_anchor, fields.now)
    fields.raise_if_invalid()
    return IntervalPlan(every=every, unit=unit, anchor=anchor)


def _parse_poll(fields: _Fields) -> Plan:
    seconds = fields.get("seconds", _check_poll_seconds)
    anchor = fields.get("anchor", _check_anchor, fields.now)
    fields.raise_if_invalid()
    return PollPlan(seconds=seconds, anchor=anchor)


def _parse_period(fields: _Fields) -> Plan:
    start = fields.get("start", _check_start)
    repeat = fields.get("repeat", _check_choice, REPEATS)
    fields.raise_if_invalid()
    return PeriodPlan(start=start, repeat=repeat)


def _parse_daily(fields: _Fields) -> Plan:
    days = fields.get("days", _check_days)
    times = fields.get("times", _check_times)
    fields.raise_if_invalid()
    return DailyPlan(days=days, times=times)


def _parse_cron(fields: _Fields) -> Plan:
    expression = fields.get("expression", _check_cron)
    fields.raise_if_invalid()
    return CronPlan(expression=expression)


_PARSERS: dict[str, Callable[[_Fields], Plan]] = {
    "interval": _parse_interval,
    "period": _parse_period,
    "daily": _parse_daily,
    "cron": _parse_cron,
    "poll": _parse_poll,
    "disabled": _parse_disabled,
}


# --- field checks: each takes the raw value (None when absent) -------------


def _quoted(value: Any) -> str:
    """A value as a message quotes it: short, so that a message never echoes a long input."""
    text = repr(value)
    return text if len(text) <= 30 else text[:29] + "…"


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _whole_number(value: Any) -> int:
    """An int, also from form strings like "12"; bools and fractions are refused."""
    if _is_blank(value):
        raise _Invalid("A value is required.")
    if isinstance(value, bool):
        raise _Invalid("Must be a whole number.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,9}", value.strip()):
        return int(value.strip())
    raise _Invalid("Must be a whole number.")


def _check_every(value: Any) -> int:
    every = _whole_number(value)
    if every < 1:
        raise _Invalid("Must be at least 1.")
    if every > MAX_EVERY:
        raise _Invalid(f"Must be at most {MAX_EVERY}.")
    return every


def _check_poll_seconds(value: Any) -> int:
    if _is_blank(value):
        return DEFAULT_POLL_SECONDS
    seconds = _whole_number(value)
    if not MIN_POLL_SECONDS <= seconds <= MAX_POLL_SECONDS:
        raise _Invalid(f"Must be between {MIN_POLL_SECONDS} and {MAX_POLL_SECONDS} seconds.")
    return seconds


def _check_choice(value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    quoted = [f'"{choice}"' for choice in choices]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    raise _Invalid(f"Must be {listed}.")


def _check_anchor(value: Any, now: datetime | None) -> datetime:
    """The instant of the first fire; defaults to ``now`` when a job is being saved."""
    if _is_blank(value):
        if now is None:
            raise _Invalid("An anchor time is required.")
        moment = now
    elif isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise _Invalid("Not a valid ISO-8601 date and time, e.g. 2026-11-21T08:10:00+00:00.") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Invalid("Must include a UTC offset, e.g. 2026-11-21T08:10:00+00:00.")
    # Whole seconds keep every fire time (anchor + k*step) on whole seconds.
    return moment.astimezone(UTC).replace(microsecond=0)


def _check_start(value: Any) -> datetime:
    if _is_blank(value):
        raise _Invalid("A start date and time is required.")
    if isinstance(value, datetime):
        start = value
    else:
        try:
            start = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise _Invalid("Not a valid date and time; use YYYY-MM-DDTHH:MM, e.g. 2026-11-21T08:00.") from None
    if start.tzinfo is not None:
        raise _Invalid("Give the local date and time without a time zone offset.")
    return start.replace(microsecond=0)


def _as_list(value: Any, most: int, what: str) -> list:
    """Lists as sent by JSON, or a comma-separated string as typed into a form."""
    if _is_blank(value):
        return []
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise _Invalid("Must be a list.")
    if len(items) > most:
        raise _Invalid(f"At most {most} {what}.")
    return items


def _check_days(value: Any) -> tuple[int, ...]:
    days = set()
    for raw in _as_list(value, len(DAY_NAMES), "days"):
        try:
            day = _whole_number(raw)
        except _Invalid:
            day = -1
        if not 0 <= day <= 6:
            raise _Invalid(f"{_quoted(raw)} is not a day; use 0 (Monday) to 6 (Sunday).")
        days.add(day)
    if not days:
        raise _Invalid("Choose at least one day.")
    return tuple(sorted(days))  # duplicates collapse here


def _check_times(value: Any) -> tuple[time, ...]:
    times = set()
    for raw in _as_list(value, MAX_TIMES, "times"):
        match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", raw.strip()) if isinstance(raw, str) else None
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise _Invalid(f"{_quoted(raw)} is not a valid time; use HH:MM between 00:00 and 23:59.")
        times.add(time(int(match[1]), int(match[2])))
    if not times:
        raise _Invalid("Give at least one time (HH:MM).")
    return tuple(sorted(times))


# Any fixed moment will do: it only proves the expression matches some real date.
_CRON_PROBE_START = datetime(2000, 1, 1)
# The shortcuts people type from other cron tables, as the five fields they stand for.
CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    last: bool = False  # takes "L" (the last day of the month)

    @property
    def allowed(self) -> str:
        text = f"{self.low}–{self.high}"
        if self.names:
            text += f" or {self.names[0]}–{self.names[-1]}"
        return text + (", or L (the last day)" if self.last else "")


_CRON_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day of month", 1, 31, last=True),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day of week", 0, 7, _WEEKDAYS),  # 0 and 7 are both Sunday
)
_CRON_ITEM = re.compile(r"(?P<base>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[^/]*))?")
_CRON_FORMAT = "five fields: minute hour day-of-month month day-of-week, e.g. 30 2 * * 1-5"


def _cron_value(text: str, spec: _CronField) -> int:
    upper = text.upper()
    if spec.names and upper in spec.names:
        return spec.low + spec.names.index(upper)
    if not re.fullmatch(r"[0-9]{1,4}", text):
        raise _Invalid(f"The {spec.name} field takes {spec.allowed}; {_quoted(text)} is not one of them.")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise _Invalid(f"The {spec.name} field takes {spec.allowed}; {value} is out of range.")
    return value


def _check_cron_field(text: str, spec: _CronField) -> None:
    """Raise _Invalid naming the field and what it takes, for anything but *, values, ranges,
    lists and steps (and L in the day of month)."""
    for item in text.split(","):
        if spec.last and item.upper() == "L":
            continue
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            raise _Invalid(f"The {spec.name} field {_quoted(text)} is not valid: use a value ({spec.allowed}), "
                           "a range (1-5), a list (1,15), a step (*/10) or *.")
        base, step = match["base"], match["step"]
        if base != "*":
            low, _, high = base.partition("-")
            first = _cron_value(low, spec)
            if high and _cron_value(high, spec) < first:
                raise _Invalid(f"The {spec.name} range {_quoted(base)} runs backwards; write the lower value first.")
        if step is not None and (not re.fullmatch(r"[0-9]{1,4}", step) or not 1 <= int(step) <= spec.high):
            raise _Invalid(f"The step of the {spec.name} field ({_quoted(step)}) must be a whole number "
                           f"from 1 to {spec.high}.")


def _check_cron(value: Any) -> str:
    if _is_blank(value):
        raise _Invalid("A cron expression is required, e.g. */5 * * * *.")
    if not isinstance(value, str):
        raise _Invalid("Must be text, e.g. */5 * * * *.")
    text = value.strip()
    if text.startswith("@"):
        if text.lower() not in CRON_MACROS:
            raise _Invalid(f"{_quoted(text)} is not a shortcut this schedule knows; use @hourly, @daily, "
                           f"@weekly, @monthly or @yearly, or {_CRON_FORMAT}.")
        text = CRON_MACROS[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        count = f"{len(fields)} field{'s' if len(fields) != 1 else ''}"
        raise _Invalid(f"A cron expression has {_CRON_FORMAT}; this one has {count}.")
    for field, spec in zip(fields, _CRON_FIELDS):
        _check_cron_field(field, spec)
    expression = " ".join(fields)
    try:
        croniter(expression, _CRON_PROBE_START).get_next(datetime)
    except CroniterBadDateError:
        raise _Invalid("This cron expression never matches a real date.") from None
    except (CroniterError, ValueError, KeyError):
        # The field checks above let through only what croniter reads; this is a safety net.
        raise _Invalid(f"This cron expression cannot be read; use {_CRON_FORMAT}.") from None
    return expression
