"""Tests for webapp.scheduling.plans: when scheduled jobs fire."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from dateutil.relativedelta import relativedelta
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.scheduling.plans import KINDS, Plan, PlanError, parse_plan, upcoming

UTC = timezone.utc
AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
ZONE_NAMES = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"]
EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]

# database=None: no example database is written into the working tree.
FAST = settings(max_examples=40, deadline=None, database=None)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(fire: datetime, tz: ZoneInfo) -> str:
    """A fire time as the wall clock in `tz` shows it, with its offset."""
    return fire.astimezone(tz).isoformat()


def wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The spec's conversion of a local wall time: zoneinfo with fold=0."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def daily(days, times) -> Plan:
    return parse_plan({"kind": "daily", "days": days, "times": times})


# --------------------------------------------------------------------------
# Examples from the spec
# --------------------------------------------------------------------------


def test_kinds():
    assert KINDS == ("automatic", "interval", "period", "daily", "cron", "poll", "disabled")


def test_interval_saved_at_0810_every_12_hours():
    plan = parse_plan({"kind": "interval", "every": 12, "unit": "hours", "anchor": "2026-11-21T08:10:00+00:00"})
    fires = upcoming(plan, utc(2026, 11, 21, 8, 9, 30), UTC, count=4)
    assert fires == [utc(2026, 11, 21, 8, 10), utc(2026, 11, 21, 20, 10), utc(2026, 11, 22, 8, 10), utc(2026, 11, 22, 20, 10)]
    assert plan.describe() == "every 12 hours"
    assert plan.to_dict() == {"kind": "interval", "every": 12, "unit": "hours", "anchor": "2026-11-21T08:10:00+00:00"}


def test_interval_next_after_is_strict_and_arithmetic_far_ahead():
    plan = parse_plan({"kind": "interval", "every": 12, "unit": "hours", "anchor": "2026-11-21T08:10:00+00:00"})
    assert plan.next_after(utc(2020, 1, 1), AMS) == utc(2026, 11, 21, 8, 10)  # before the anchor: the anchor
    assert plan.next_after(utc(2026, 11, 21, 8, 10), AMS) == utc(2026, 11, 21, 20, 10)  # on a fire: the next one
    assert plan.next_after(utc(2096, 3, 1, 8, 9, 59, 999999), AMS) == utc(2096, 3, 1, 8, 10)


def test_interval_in_minutes_ignores_daylight_saving():
    plan = parse_plan({"kind": "interval", "every": 90, "unit": "minutes", "anchor": "2026-03-29T00:00:00+00:00"})
    fires = upcoming(plan, utc(2026, 3, 28), AMS, count=3)
    assert fires == [utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 3, 0)]


def test_interval_without_anchor_is_anchored_at_now_rounded_down():
    now = utc(2026, 11, 21, 8, 10, 42, 123456)
    plan = parse_plan({"kind": "interval", "every": "12", "unit": "hours"}, now=now)
    assert plan.to_dict()["anchor"] == "2026-11-21T08:10:42+00:00"
    assert plan.next_after(now - timedelta(seconds=1), UTC) == utc(2026, 11, 21, 8, 10, 42)
    assert plan.next_after(now, UTC) == utc(2026, 11, 21, 20, 10, 42)


def test_anchor_with_another_offset_is_stored_as_utc():
    plan = parse_plan({"kind": "interval", "every": 1, "unit": "hours", "anchor": "2026-11-21T09:10:00+01:00"})
    assert plan.to_dict()["anchor"] == "2026-11-21T08:10:00+00:00"
    assert plan.describe() == "every 1 hour"


def test_poll_defaults_to_60_seconds():
    now = utc(2026, 11, 21, 8, 0, 0)
    plan = parse_plan({"kind": "poll"}, now=now)
    assert plan.to_dict() == {"kind": "poll", "seconds": 60, "anchor": "2026-11-21T08:00:00+00:00"}
    assert plan.describe() == "every 60 s (poll)"
    assert upcoming(plan, now, UTC, count=3) == [utc(2026, 11, 21, 8, 1), utc(2026, 11, 21, 8, 2), utc(2026, 11, 21, 8, 3)]


def test_poll_accepts_seconds_from_a_form():
    plan = parse_plan({"kind": "poll", "seconds": " 15 ", "anchor": "2026-11-21T08:00:00Z"})
    assert plan.to_dict()["seconds"] == 15
    assert plan.next_after(utc(2026, 11, 21, 8, 0, 59), UTC) == utc(2026, 11, 21, 8, 1, 0)


def test_period_monthly_from_january_31_is_computed_from_the_start():
    plan = parse_plan({"kind": "period", "start": "2026-01-31T08:00", "repeat": "monthly"})
    fires = upcoming(plan, utc(2026, 1, 1), UTC, count=5)
    assert fires == [utc(2026, 1, 31, 8), utc(2026, 2, 28, 8), utc(2026, 3, 31, 8), utc(2026, 4, 30, 8), utc(2026, 5, 31, 8)]
    leap = parse_plan({"kind": "period", "start": "2028-01-31T08:00", "repeat": "monthly"})
    assert upcoming(leap, utc(2028, 2, 1), UTC, count=2) == [utc(2028, 2, 29, 8), utc(2028, 3, 31, 8)]


def test_period_weekly_keeps_local_wall_time_across_daylight_saving():
    plan = parse_plan({"kind": "period", "start": "2026-03-22T08:00", "repeat": "weekly"})
    fires = upcoming(plan, utc(2026, 3, 1), AMS, count=3)
    assert [local(f, AMS) for f in fires] == [
        "2026-03-22T08:00:00+01:00",
        "2026-03-29T08:00:00+02:00",
        "2026-04-05T08:00:00+02:00",
    ]
    assert plan.describe() == "weekly from 2026-03-22 08:00"
    assert plan.to_dict() == {"kind": "period", "start": "2026-03-22T08:00", "repeat": "weekly"}


def test_period_daily_far_after_the_start():
    plan = parse_plan({"kind": "period", "start": "2001-01-01T23:15", "repeat": "daily"})
    assert local(plan.next_after(utc(2090, 6, 1, 12), AMS), AMS) == "2090-06-01T23:15:00+02:00"


def test_daily_mon_to_fri_skips_the_weekend():
    plan = daily([0, 1, 2, 3, 4], ["02:30", "14:00"])
    assert plan.describe() == "daily Mon–Fri at 02:30, 14:00"
    # 2026-11-20 is a Friday.
    fires = upcoming(plan, utc(2026, 11, 20, 12), UTC, count=3)
    assert fires == [utc(2026, 11, 20, 14), utc(2026, 11, 23, 2, 30), utc(2026, 11, 23, 14)]


def test_daily_normalises_form_input():
    plan = daily(["4", 0, 0, "2"], "14:00, 7:05")
    assert plan.to_dict() == {"kind": "daily", "days": [0, 2, 4], "times": ["07:05", "14:00"]}
    assert plan.describe() == "daily Mon, Wed, Fri at 07:05, 14:00"


def test_cron_every_15_minutes():
    plan = parse_plan({"kind": "cron", "expression": "*/15 * * * *"})
    assert plan.describe() == "cron */15 * * * *"
    fires = upcoming(plan, utc(2026, 11, 21, 8, 7, 12), UTC, count=4)
    assert fires == [utc(2026, 11, 21, 8, 15), utc(2026, 11, 21, 8, 30), utc(2026, 11, 21, 8, 45), utc(2026, 11, 21, 9, 0)]


def test_cron_is_local_wall_time():
    plan = parse_plan({"kind": "cron", "expression": "0 9 * * 1-5"})
    assert local(plan.next_after(utc(2026, 11, 21, 12), NYC), NYC) == "2026-11-23T09:00:00-05:00"


def test_disabled_never_fires():
    plan = parse_plan({"kind": "disabled"})
    assert plan.next_after(utc(2026, 1, 1), AMS) is None
    assert upcoming(plan, utc(2026, 1, 1), AMS) == []
    assert plan.describe() == "disabled"
    assert plan.to_dict() == {"kind": "disabled"}


def test_automatic_resolves_to_the_declared_plan():
    declared = {"kind": "daily", "days": EVERY_DAY, "times": ["02:30"]}
    plan = parse_plan({"kind": "automatic"}, automatic=declared)
    assert plan.kind == "automatic"
    assert plan.to_dict() == {"kind": "automatic"}
    assert plan.describe() == "automatic: daily at 02:30"
    after = utc(2026, 6, 1)
    assert upcoming(plan, after, AMS) == upcoming(parse_plan(declared), after, AMS)


def test_automatic_without_a_declared_schedule_is_refused():
    with pytest.raises(PlanError) as info:
        parse_plan({"kind": "automatic"})
    assert info.value.errors == {"kind": "this job type declares no automatic schedule"}


def test_plan_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_plan({"kind": "interval", "every": 0, "unit": "hours", "anchor": "2026-01-01T00:00:00+00:00"})


def test_naive_after_is_refused():
    plan = parse_plan({"kind": "cron", "expression": "* * * * *"})
    with pytest.raises(ValueError):
        plan.next_after(datetime(2026, 1, 1), AMS)


# --------------------------------------------------------------------------
# Refused input: the message lands on the right form field
# --------------------------------------------------------------------------

ANCHOR = "2026-11-21T08:10:00+00:00"
REFUSED = [
    ({"kind": "interval", "every": 0, "unit": "hours", "anchor": ANCHOR}, "every", "Must be at least 1."),
    ({"kind": "interval", "every": "0", "unit": "hours", "anchor": ANCHOR}, "every", "Must be at least 1."),
    ({"kind": "interval", "every": 10001, "unit": "hours", "anchor": ANCHOR}, "every", "Must be at most 10000."),
    ({"kind": "interval", "every": "twelve", "unit": "hours", "anchor": ANCHOR}, "every", "Must be a whole number."),
    ({"kind": "interval", "every": 1.5, "unit": "hours", "anchor": ANCHOR}, "every", "Must be a whole number."),
    ({"kind": "interval", "every": 12, "unit": "days", "anchor": ANCHOR}, "unit", 'Must be "minutes" or "hours".'),
    ({"kind": "interval", "every": 12, "unit": "hours"}, "anchor", "An anchor time is required."),
    ({"kind": "interval", "every": 12, "unit": "hours", "anchor": "2026-11-21T08:10"}, "anchor", "Must include a UTC offset"),
    ({"kind": "interval", "every": 12, "unit": "hours", "anchor": "yesterday"}, "anchor", "Not a valid ISO-8601"),
    ({"kind": "poll", "seconds": 0, "anchor": ANCHOR}, "seconds", "Must be between 1 and 300 seconds."),
    ({"kind": "poll", "seconds": 301, "anchor": ANCHOR}, "seconds", "Must be between 1 and 300 seconds."),
    ({"kind": "poll", "seconds": "301", "anchor": ANCHOR}, "seconds", "Must be between 1 and 300 seconds."),
    ({"kind": "cron", "expression": "every five minutes"}, "expression",
     "A cron expression has five fields: minute hour day-of-month month day-of-week, e.g. 30 2 * * 1-5; "
     "this one has 3 fields."),
    ({"kind": "cron", "expression": "61 * * * *"}, "expression", "The minute field takes 0–59; 61 is out of range."),
    ({"kind": "cron", "expression": "0 24 * * *"}, "expression", "The hour field takes 0–23; 24 is out of range."),
    ({"kind": "cron", "expression": "0 0 0 * *"}, "expression",
     "The day of month field takes 1–31, or L (the last day); 0 is out of range."),
    ({"kind": "cron", "expression": "0 0 * 13 *"}, "expression", "The month field takes 1–12 or JAN–DEC; 13 is out"),
    ({"kind": "cron", "expression": "0 0 * * FUN"}, "expression",
     "The day of week field takes 0–7 or SUN–SAT; 'FUN' is not one of them."),
    ({"kind": "cron", "expression": "30-10 * * * *"}, "expression", "The minute range '30-10' runs backwards"),
    ({"kind": "cron", "expression": "*/0 * * * *"}, "expression", "The step of the minute field ('0') must be"),
    ({"kind": "cron", "expression": "1#2 * * * *"}, "expression", "The minute field '1#2' is not valid: use a value"),
    ({"kind": "cron", "expression": "*/5 * * * * *"}, "expression", "this one has 6 fields."),
    ({"kind": "cron", "expression": "@reboot"}, "expression", "'@reboot' is not a shortcut this schedule knows"),
    ({"kind": "cron", "expression": "R * * * *"}, "expression", "The minute field takes 0–59; 'R' is not one of them."),
    ({"kind": "cron", "expression": "0 0 30 2 *"}, "expression", "never matches"),
    ({"kind": "cron"}, "expression", "A cron expression is required"),
    ({"kind": "period", "repeat": "daily"}, "start", "A start date and time is required."),
    ({"kind": "period", "start": "soon", "repeat": "daily"}, "start", "Not a valid date and time"),
    ({"kind": "period", "start": "2026-11-21T08:00+01:00", "repeat": "daily"}, "start", "without a time zone"),
    ({"kind": "period", "start": "2026-11-21T08:00", "repeat": "yearly"}, "repeat", "Must be"),
    ({"kind": "daily", "days": [], "times": ["02:30"]}, "days", "Choose at least one day."),
    ({"kind": "daily", "times": ["02:30"]}, "days", "Choose at least one day."),
    ({"kind": "daily", "days": [7], "times": ["02:30"]}, "days", "not a day"),
    ({"kind": "daily", "days": [0], "times": ["25:00"]}, "times", "'25:00' is not a valid time"),
    ({"kind": "daily", "days": [0], "times": ["12:60"]}, "times", "is not a valid time"),
    ({"kind": "daily", "days": [0], "times": []}, "times", "Give at least one time"),
    ({"kind": "weekly"}, "kind", "Unknown schedule kind"),
    ({}, "kind", "A schedule kind is required."),
]


@pytest.mark.parametrize(("data", "field", "message"), REFUSED)
def test_refused_input_names_the_field(data, field, message):
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    assert field in info.value.errors, info.value.errors
    assert message in info.value.errors[field]


@pytest.mark.parametrize(("macro", "expression"), [
    ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@ANNUALLY", "0 0 1 1 *"), (" @daily ", "0 0 * * *"),
])
def test_cron_shortcuts_are_stored_as_the_five_fields_they_stand_for(macro, expression):
    plan = parse_plan({"kind": "cron", "expression": macro})
    assert plan.to_dict() == {"kind": "cron", "expression": expression}
    assert plan.describe() == f"cron {expression}"


def test_all_problems_are_reported_together():
    with pytest.raises(PlanError) as info:
        parse_plan({"kind": "daily", "days": [], "times": ["25:00"]})
    assert set(info.value.errors) == {"days", "times"}


def test_a_declared_automatic_plan_cannot_be_automatic():
    with pytest.raises(PlanError) as info:
        parse_plan({"kind": "automatic"}, automatic={"kind": "automatic"})
    assert "kind" in info.value.errors


# --------------------------------------------------------------------------
# Daylight saving: explicit examples
# --------------------------------------------------------------------------


def test_0230_on_spring_forward_day_in_amsterdam_fires_once_at_0330():
    plan = daily(EVERY_DAY, ["02:30"])
    fires = upcoming(plan, utc(2026, 3, 28, 12), AMS, count=3)
    assert [local(f, AMS) for f in fires] == [
        "2026-03-29T03:30:00+02:00",  # 02:30 does not exist that night: fold=0 shifts it an hour on
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_0230_on_fall_back_day_in_amsterdam_fires_once_at_the_first():
    plan = daily(EVERY_DAY, ["02:30"])
    fires = upcoming(plan, utc(2026, 10, 24, 12), AMS, count=3)
    assert [local(f, AMS) for f in fires] == [
        "2026-10-25T02:30:00+02:00",  # 02:30 happens twice that night: only the first counts
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # Asked during the repeated hour, after the first 02:30, it waits for the next day.
    assert local(plan.next_after(utc(2026, 10, 25, 1, 15), AMS), AMS) == "2026-10-26T02:30:00+01:00"


def test_two_times_landing_on_the_same_instant_fire_once():
    plan = daily(EVERY_DAY, ["02:30", "03:30"])
    fires = upcoming(plan, utc(2026, 3, 28, 12), AMS, count=3)
    assert [local(f, AMS) for f in fires] == [
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-30T03:30:00+02:00",
    ]


def test_a_later_wall_time_can_fire_before_a_shifted_one():
    # 02:50 does not exist on 2026-03-29 and becomes 03:50; 03:10 reads later
    # on the clock but happens first.
    plan = daily(EVERY_DAY, ["02:50", "03:10"])
    fires = upcoming(plan, utc(2026, 3, 28, 23), AMS, count=3)
    assert [local(f, AMS) for f in fires] == [
        "2026-03-29T03:10:00+02:00",
        "2026-03-29T03:50:00+02:00",
        "2026-03-30T02:50:00+02:00",
    ]


def test_skipped_wall_time_is_found_when_asked_inside_the_shifted_hour():
    # At 03:20 summer time the shifted 02:25 (= 03:25) is still to come.
    after = utc(2026, 3, 29, 1, 20)
    for plan in (daily(EVERY_DAY, ["02:25"]), parse_plan({"kind": "cron", "expression": "25 2 * * *"})):
        assert local(plan.next_after(after, AMS), AMS) == "2026-03-29T03:25:00+02:00"


def test_cron_across_spring_forward_in_new_york():
    plan = parse_plan({"kind": "cron", "expression": "*/30 * * * *"})
    fires = upcoming(plan, utc(2026, 3, 8, 6, 10), NYC, count=4)  # 01:10 EST
    assert [local(f, NYC) for f in fires] == [
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:00:00-04:00",  # 02:00 and 03:00 are the same instant
        "2026-03-08T03:30:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_cron_across_fall_back_in_amsterdam_skips_the_repeated_hour():
    plan = parse_plan({"kind": "cron", "expression": "*/30 * * * *"})
    fires = upcoming(plan, utc(2026, 10, 24, 23, 10), AMS, count=4)  # 01:10 CEST
    assert [local(f, AMS) for f in fires] == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",
    ]
    assert local(plan.next_after(utc(2026, 10, 25, 1, 10), AMS), AMS) == "2026-10-25T03:00:00+01:00"


def test_lord_howe_half_hour_shift():
    tz = ZoneInfo("Australia/Lord_Howe")
    plan = daily(EVERY_DAY, ["02:15"])
    # Clocks go from 02:00 to 02:30 on 2026-10-04: 02:15 fires at 02:45.
    assert local(plan.next_after(utc(2026, 10, 3, 12), tz), tz) == "2026-10-04T02:45:00+11:00"


# --------------------------------------------------------------------------
# Daylight saving: a whole year, one fire per local day per time
# --------------------------------------------------------------------------


def fires_in_year(plan: Plan, tz: ZoneInfo, year: int, per_day: int) -> list[datetime]:
    start = datetime(year - 1, 12, 31, 12, tzinfo=tz).astimezone(UTC)
    fires = upcoming(plan, start, tz, count=366 * per_day + 2 * per_day)
    assert fires[-1].astimezone(tz).year == year + 1, "the year was not fully covered"
    return [f for f in fires if f.astimezone(tz).year == year]


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


hhmm = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda hm: f"{hm[0]:02d}:{hm[1]:02d}")
# All zones under test change their clocks between 01:00 and 04:00 local time.
near_change_hhmm = st.tuples(st.integers(1, 3), st.integers(0, 59)).map(lambda hm: f"{hm[0]:02d}:{hm[1]:02d}")
any_hhmm = st.one_of(hhmm, near_change_hhmm)
dst_zones = st.sampled_from([AMS, NYC])


@settings(max_examples=12, deadline=None, database=None)
@given(tz=dst_zones, at=any_hhmm)
def test_one_fire_per_local_day_for_a_daily_time_all_year(tz, at):
    fires = fires_in_year(daily(EVERY_DAY, [at]), tz, 2026, per_day=1)
    per_date = Counter(f.astimezone(tz).date() for f in fires)
    assert all(per_date[d] == 1 for d in days_of(2026)), {d: n for d, n in per_date.items() if n != 1}
    assert len(fires) == 365


@pytest.mark.parametrize("tz", [AMS, NYC], ids=str)
def test_0230_all_year_including_both_change_days(tz):
    fires = fires_in_year(daily(EVERY_DAY, ["02:30"]), tz, 2026, per_day=1)
    assert sorted(Counter(f.astimezone(tz).date() for f in fires).values()) == [1] * 365


@settings(max_examples=8, deadline=None, database=None)
@given(tz=dst_zones, times=st.lists(any_hhmm, min_size=2, max_size=4, unique=True))
def test_each_configured_time_fires_once_per_local_day_all_year(tz, times):
    fires = fires_in_year(daily(EVERY_DAY, times), tz, 2026, per_day=len(times))
    by_date: dict[date, list[datetime]] = {}
    for fire in fires:
        by_date.setdefault(fire.astimezone(tz).date(), []).append(fire)
    for day in days_of(2026):
        # Each time's fire is its fold=0 instant; times that land on the same
        # instant (02:30 and 03:30 on a spring-forward day) share one fire.
        expected = {wall_to_utc(datetime.combine(day, time.fromisoformat(t)), tz) for t in times}
        assert sorted(by_date.get(day, [])) == sorted(expected), day
        if tz.utcoffset(datetime.combine(day, time(0))) == tz.utcoffset(datetime.combine(day, time(23, 59))):
            assert len(by_date[day]) == len(times), day  # no change that day: every time fires


# --------------------------------------------------------------------------
# Properties over random valid plans
# --------------------------------------------------------------------------

zones = st.sampled_from([ZoneInfo(name) for name in ZONE_NAMES])
aware_moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC))
wall_minutes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)


@cache
def transitions_2026(tz: ZoneInfo) -> list[datetime]:
    """UTC hours in 2026 just before the zone's UTC offset changes."""
    hours = [utc(2026, 1, 1) + timedelta(hours=n) for n in range(366 * 24)]
    return [h for h, nxt in zip(hours, hours[1:]) if h.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset()]


@st.composite
def zone_and_after(draw):
    """A zone and an `after` instant, often within hours of a daylight-saving change."""
    tz = draw(zones)
    if transitions_2026(tz) and draw(st.booleans()):
        change = draw(st.sampled_from(transitions_2026(tz)))
        return tz, change + draw(st.timedeltas(min_value=timedelta(hours=-6), max_value=timedelta(hours=6)))
    return tz, draw(aware_moments)


interval_plans = st.fixed_dictionaries(
    {
        "kind": st.just("interval"),
        "every": st.one_of(st.integers(1, 180), st.integers(1, 10_000)),
        "unit": st.sampled_from(["minutes", "hours"]),
        "anchor": aware_moments.map(datetime.isoformat),
    }
)
poll_plans = st.fixed_dictionaries(
    {"kind": st.just("poll"), "anchor": aware_moments.map(datetime.isoformat)},
    optional={"seconds": st.integers(1, 300)},
)
period_plans = st.fixed_dictionaries(
    {
        "kind": st.just("period"),
        "start": wall_minutes.map(lambda d: d.isoformat(timespec="minutes")),
        "repeat": st.sampled_from(["daily", "weekly", "monthly"]),
    }
)
daily_plans = st.fixed_dictionaries(
    {
        "kind": st.just("daily"),
        "days": st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True),
        "times": st.lists(any_hhmm, min_size=1, max_size=5, unique=True),
    }
)
# Every combination below matches some real date (each month set contains a 31-day month).
minute_fields = st.sampled_from(["*", "*/5", "*/15", "0", "30", "0,30", "10-20", "*/7", "59"])
hour_fields = st.sampled_from(["*", "*/2", "2", "0-3", "1,2,3", "9-17", "23", "2,3"])
frequent_crons = st.tuples(minute_fields, hour_fields).map(lambda mh: f"{mh[0]} {mh[1]} * * *")
any_crons = st.tuples(
    minute_fields,
    hour_fields,
    st.sampled_from(["*", "*", "1", "15", "L", "1-7", "31"]),
    st.sampled_from(["*", "*", "1,4,7,10", "3", "10,11", "*/2"]),
    st.sampled_from(["*", "*", "1-5", "0", "6", "mon,fri"]),
).map(" ".join)
cron_plans = st.builds(lambda e: {"kind": "cron", "expression": e}, st.one_of(frequent_crons, any_crons))
concrete_plans = st.one_of(interval_plans, poll_plans, period_plans, daily_plans, cron_plans)
automatic_plans = concrete_plans.map(lambda declared: ({"kind": "automatic"}, declared))
all_plans = st.one_of(
    concrete_plans.map(lambda data: (data, None)),
    automatic_plans,
    st.just(({"kind": "disabled"}, None)),
)


@FAST
@given(case=all_plans, where=zone_and_after())
def test_upcoming_is_strictly_increasing_and_later_than_after(case, where):
    data, declared = case
    tz, after = where
    plan = parse_plan(data, automatic=declared)
    fires = upcoming(plan, after, tz, count=6)
    if plan.kind == "disabled":
        assert fires == []
        return
    assert len(fires) == 6
    assert all(f.tzinfo == UTC and f.microsecond == 0 for f in fires)
    assert fires[0] > after
    assert all(a < b for a, b in zip(fires, fires[1:]))
    for earlier, later in zip(fires, fires[1:]):
        assert plan.next_after(earlier, tz) == later  # on a fire time: the following one
    for fire in fires:
        # One second earlier (fires are whole seconds): nothing was skipped.
        assert plan.next_after(fire - timedelta(seconds=1), tz) == fire


@FAST
@given(case=all_plans)
def test_stored_form_round_trips(case):
    data, declared = case
    plan = parse_plan(data, automatic=declared)
    stored = json.loads(json.dumps(plan.to_dict()))
    assert parse_plan(stored, automatic=declared) == plan
    assert plan.to_dict() == stored
    assert stored["kind"] == data["kind"]
    assert isinstance(plan.describe(), str) and plan.describe()


@FAST
@given(data=st.one_of(interval_plans, poll_plans), where=zone_and_after())
def test_fixed_step_plans_fire_on_the_anchor_grid_without_skipping(data, where):
    tz, after = where
    plan = parse_plan(data)
    stored = plan.to_dict()
    anchor = datetime.fromisoformat(stored["anchor"])
    if stored["kind"] == "poll":
        step = timedelta(seconds=stored["seconds"])
    else:
        step = timedelta(**{stored["unit"]: stored["every"]})
    first = plan.next_after(after, tz)
    assert first > after and first >= anchor
    assert (first - anchor) % step == timedelta(0)
    assert first == anchor or first - step <= after  # the previous grid point is not later than `after`


def first_fires_from_walls(walls, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    """Brute force: convert every candidate wall time, drop duplicates, keep what is after `after`."""
    instants = sorted({wall_to_utc(w, tz) for w in walls})
    return [i for i in instants if i > after][:count]


@FAST
@given(data=daily_plans, where=zone_and_after())
def test_daily_matches_brute_force(data, where):
    tz, after = where
    plan = parse_plan(data)
    first_day = after.astimezone(tz).date() - timedelta(days=2)
    walls = [
        datetime.combine(first_day + timedelta(days=n), time.fromisoformat(t))
        for n in range(50)
        for t in data["times"]
        if (first_day + timedelta(days=n)).weekday() in data["days"]
    ]
    assert upcoming(plan, after, tz, count=5) == first_fires_from_walls(walls, after, tz, 5)


@FAST
@given(
    data=period_plans,
    tz=zones,
    offset=st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=400)),
)
def test_period_matches_brute_force(data, tz, offset):
    plan = parse_plan(data)
    start = datetime.fromisoformat(data["start"])
    after = wall_to_utc(start, tz) + offset
    step = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}.get(data["repeat"])
    if step is None:
        walls = [start + relativedelta(months=k) for k in range(30)]
    else:
        walls = [start + k * step for k in range(500)]
    assert upcoming(plan, after, tz, count=5) == first_fires_from_walls(walls, after, tz, 5)


@FAST
@given(expression=frequent_crons, where=zone_and_after())
def test_cron_matches_brute_force(expression, where):
    tz, after = where
    plan = parse_plan({"kind": "cron", "expression": expression})
    local_after = after.astimezone(tz).replace(tzinfo=None)
    matches = croniter(expression, local_after - timedelta(days=1))
    walls: list[datetime] = []
    # Collect until ten matches read 3 h past `after` (more than any DST shift).
    while sum(w > local_after + timedelta(hours=3) for w in walls[-10:]) < 10:
        walls.append(matches.get_next(datetime))
    assert upcoming(plan, after, tz, count=5) == first_fires_from_walls(walls, after, tz, 5)


# --------------------------------------------------------------------------
# The ends of the calendar: Python's datetime stops at years 1 and 9999
# --------------------------------------------------------------------------

FIRST_MOMENT = datetime.min.replace(tzinfo=UTC)
LAST_MOMENT = datetime.max.replace(tzinfo=UTC, microsecond=0)
EDGE_ZONES = [*ZONE_NAMES, "Pacific/Kiritimati", "Pacific/Pago_Pago"]  # UTC+14 and UTC-11
EDGE_PLANS = [
    {"kind": "period", "start": "9999-12-31T23:59", "repeat": "monthly"},
    {"kind": "period", "start": "9999-12-31T23:59", "repeat": "daily"},
    {"kind": "period", "start": "9999-12-01T00:00", "repeat": "weekly"},
    {"kind": "period", "start": "0001-01-01T00:00", "repeat": "monthly"},
    {"kind": "period", "start": "0001-01-31T12:00", "repeat": "daily"},
    {"kind": "daily", "days": EVERY_DAY, "times": ["00:00", "23:59"]},
    {"kind": "cron", "expression": "0 0 1 1 *"},
    {"kind": "cron", "expression": "0 0 29 2 *"},
    {"kind": "cron", "expression": "* * * * *"},
    {"kind": "interval", "every": 10_000, "unit": "hours", "anchor": "9999-12-31T00:00:00+00:00"},
    {"kind": "interval", "every": 1, "unit": "minutes", "anchor": "0001-01-01T00:00:00+00:00"},
    {"kind": "poll", "seconds": 300, "anchor": "9999-12-31T23:59:59+00:00"},
]
EDGE_AFTERS = [
    FIRST_MOMENT, FIRST_MOMENT + timedelta(hours=13), utc(1, 1, 2),
    utc(2026, 6, 1), utc(9999, 12, 1), utc(9999, 12, 31, 9), utc(9999, 12, 31, 22, 59), LAST_MOMENT,
]


@pytest.mark.parametrize("data", EDGE_PLANS, ids=lambda data: json.dumps(data))
@pytest.mark.parametrize("zone", EDGE_ZONES)
def test_plans_near_years_1_and_9999_answer_fire_times_or_none(data, zone):
    tz = ZoneInfo(zone)
    plan = parse_plan(data)
    for after in EDGE_AFTERS:
        fires = upcoming(plan, after, tz, count=3)
        assert all(f.tzinfo == UTC for f in fires)
        assert all(a < b for a, b in zip([after, *fires], fires)), (after, fires)


def test_a_monthly_period_from_the_last_minute_of_9999_fires_once_where_that_minute_exists():
    plan = parse_plan({"kind": "period", "start": "9999-12-31T23:59", "repeat": "monthly"})
    assert upcoming(plan, utc(2026, 1, 1), AMS) == [utc(9999, 12, 31, 22, 59)]
    # In New York that wall time is already in UTC year 10000: no fire time at all.
    assert upcoming(plan, utc(2026, 1, 1), NYC) == []
    assert plan.next_after(utc(9999, 12, 31, 22, 59), AMS) is None


def test_the_last_fire_times_of_a_daily_plan_are_on_december_31_9999():
    plan = daily(EVERY_DAY, ["12:00", "23:30"])
    assert upcoming(plan, utc(9999, 12, 30, 12), UTC) == [utc(9999, 12, 30, 23, 30), utc(9999, 12, 31, 12),
                                                          utc(9999, 12, 31, 23, 30)]
    cron = parse_plan({"kind": "cron", "expression": "30 23 * * *"})
    assert upcoming(cron, utc(9999, 12, 30, 12), UTC) == [utc(9999, 12, 30, 23, 30), utc(9999, 12, 31, 23, 30)]


def test_fire_times_from_year_1():
    plan = daily(EVERY_DAY, ["00:30"])
    # 0001-01-01 00:30 at UTC+14 is in UTC year 0: the first fire is the next day's.
    plus_14 = ZoneInfo("Etc/GMT-14")
    assert upcoming(plan, FIRST_MOMENT, plus_14, count=2) == [utc(1, 1, 1, 10, 30), utc(1, 1, 2, 10, 30)]
    period = parse_plan({"kind": "period", "start": "0001-01-01T00:00", "repeat": "monthly"})
    assert upcoming(period, FIRST_MOMENT, UTC, count=2) == [utc(1, 2, 1), utc(1, 3, 1)]


edge_walls = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 8)),
    st.datetimes(min_value=datetime(9999, 12, 1), max_value=datetime(9999, 12, 31, 23, 59)),
).map(lambda d: d.replace(second=0, microsecond=0))
edge_moments = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 8), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(9999, 12, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.just(UTC)),
    st.sampled_from([FIRST_MOMENT, LAST_MOMENT]),
)
edge_plans = st.one_of(
    st.fixed_dictionaries({"kind": st.just("period"), "start": edge_walls.map(datetime.isoformat),
                           "repeat": st.sampled_from(["daily", "weekly", "monthly"])}),
    st.fixed_dictionaries({"kind": st.just("interval"), "every": st.integers(1, 10_000),
                           "unit": st.sampled_from(["minutes", "hours"]),
                           "anchor": edge_moments.map(lambda d: d.replace(microsecond=0).isoformat())}),
    st.fixed_dictionaries({"kind": st.just("poll"), "seconds": st.integers(1, 300),
                           "anchor": edge_moments.map(lambda d: d.replace(microsecond=0).isoformat())}),
    daily_plans,
    cron_plans,
)


@settings(FAST, max_examples=300)
@given(data=edge_plans, after=edge_moments, tz=st.sampled_from([ZoneInfo(name) for name in EDGE_ZONES]))
def test_near_the_ends_of_the_calendar_a_plan_answers_a_later_fire_time_or_none(data, after, tz):
    plan = parse_plan(data)
    fires = upcoming(plan, after, tz, count=3)
    assert all(a < b for a, b in zip([after, *fires], fires))
    assert all(f.tzinfo == UTC and f.microsecond == 0 for f in fires)


# --------------------------------------------------------------------------
# Bounded text: what a form or an API client can send is never stored unchecked
# --------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "field"), [
    ({"kind": "cron", "expression": "*/5 " + " ".join(["*"] * 4) + " " * 40_000}, "expression"),
    ({"kind": "cron", "expression": ",".join(["1"] * 20_000) + " * * * *"}, "expression"),
    ({"kind": "daily", "days": EVERY_DAY, "times": ", ".join(["08:00"] * 5000)}, "times"),
    ({"kind": "daily", "days": EVERY_DAY, "times": ["08:00"] * 5000}, "times"),
    ({"kind": "daily", "days": ["1"] * 5000, "times": "08:00"}, "days"),
    ({"kind": "period", "start": "2026-01-01T08:00" + " " * 5000, "repeat": "daily"}, "start"),
    ({"kind": "interval", "every": "0" * 5000 + "1", "unit": "hours", "anchor": ANCHOR}, "every"),
    ({"kind": "poll", "seconds": " " * 5000 + "60", "anchor": ANCHOR}, "seconds"),
    ({"kind": "poll", "seconds": 60, "anchor": ANCHOR + " " * 5000}, "anchor"),
])
def test_over_long_plan_fields_are_refused_with_their_limit(data, field):
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    assert info.value.errors[field].startswith("At most "), info.value.errors
    assert len(str(info.value)) < 300  # the message does not echo the input


@pytest.mark.parametrize("data", [
    {"kind": "x" * 40_000},
    {"kind": "daily", "days": ["x" * 40_000], "times": "08:00"},
    {"kind": "daily", "days": [1], "times": "x" * 390},
    {"kind": "interval", "every": 5, "unit": "x" * 40_000, "anchor": ANCHOR},
])
def test_messages_do_not_echo_long_input(data):
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(("data", "field"), [
    ({"kind": "interval", "every": "١٢", "unit": "hours", "anchor": ANCHOR}, "every"),
    ({"kind": "interval", "every": "²", "unit": "hours", "anchor": ANCHOR}, "every"),
    ({"kind": "poll", "seconds": "٦٠", "anchor": ANCHOR}, "seconds"),
    ({"kind": "daily", "days": ["٣"], "times": "08:00"}, "days"),
    ({"kind": "daily", "days": [1], "times": "٠٨:٠٠"}, "times"),
])
def test_numbers_are_ascii_digits(data, field):
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    assert field in info.value.errors
