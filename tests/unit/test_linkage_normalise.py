"""Tests for webapp.linkage.normalise: the forms in which person fields are stored and compared."""

from __future__ import annotations

from datetime import date

import pytest

from webapp.linkage.normalise import normalise_name, normalise_postcode, normalise_sex, parse_date

FEB_3_2001 = date(2001, 2, 3)


@pytest.mark.parametrize("text", [
    "2001-02-03", "2001-2-3", "2001-02-03T10:30:00", "2001-02-03 10:30", "2001/02/03",
    "20010203",
    "03/02/2001", "3/2/2001", "03-02-2001", "3.2.2001", "03.02.2001",
    "3 Feb 2001", "3 feb 2001", "03 FEB 2001", "3 February 2001", "3rd February 2001",
    "03-Feb-2001", "Feb 3, 2001", "February 3 2001", "  3   Feb 2001  ",
])
def test_each_date_format_reads_as_the_third_of_february(text):
    assert parse_date(text) == FEB_3_2001


def test_slashed_dates_are_day_first():
    assert parse_date("12/01/2001") == date(2001, 1, 12)
    assert parse_date("01/12/2001") == date(2001, 12, 1)


@pytest.mark.parametrize("text", [
    None, "", "   ", "unknown", "2001-02-30", "31/04/2001", "13/13/2001", "03/02/01",
    "2001-13-01", "3 Foo 2001", "20011301", "2001", "12345", "3 Feb", "0/0/2001",
])
def test_no_date_from_what_holds_none(text):
    assert parse_date(text) is None


def test_a_leap_day_exists_only_in_leap_years():
    assert parse_date("29/02/2000") == date(2000, 2, 29)
    assert parse_date("29/02/2001") is None


@pytest.mark.parametrize("text, expected", [
    ("Zoë", "zoe"), ("ZOË", "zoe"), ("José", "jose"), ("François", "francois"),
    ("Łukasz", "lukasz"), ("Søren", "soren"), ("Weiß", "weiss"), ("Ægir", "aegir"),
    ("Smith-Jones", "smith jones"), ("Smith - Jones", "smith jones"),
    ("O'Brien", "obrien"), ("O’Brien", "obrien"), ("  Mary   Ann  ", "mary ann"),
    ("St. John", "st john"), ("de Vries", "de vries"), ("MCDONALD", "mcdonald"),
])
def test_names_lose_case_accents_and_punctuation(text, expected):
    assert normalise_name(text) == expected


@pytest.mark.parametrize("text", [None, "", "   ", "-", "'", "123"])
def test_a_name_of_nothing_is_empty(text):
    assert normalise_name(text) == ""


def test_names_written_differently_compare_equal():
    assert normalise_name("Hernández") == normalise_name("HERNANDEZ") == "hernandez"


@pytest.mark.parametrize("text, expected", [
    ("sw1a1aa", "SW1A 1AA"), ("SW1A 1AA", "SW1A 1AA"), (" sw1a  1aa ", "SW1A 1AA"),
    ("M1 1AE", "M1 1AE"), ("m11ae", "M1 1AE"), ("B33-8TH", "B33 8TH"),
    ("2000", "2000"), ("75 001", "75001"), ("", ""), (None, ""),
])
def test_postcodes(text, expected):
    assert normalise_postcode(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("M", "M"), ("m", "M"), ("Male", "M"), (" MALE ", "M"), ("1", "M"),
    ("F", "F"), ("female", "F"), ("Woman", "F"), ("2", "F"),
    ("", ""), (None, ""), ("X", ""), ("unknown", ""), ("9", ""),
])
def test_sex(text, expected):
    assert normalise_sex(text) == expected
