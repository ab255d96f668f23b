"""Tests for webapp.formats.writers: the files an export produces, read as a user reads them."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.formats import writers
from webapp.formats.odm import ClinicalData, ItemDef, OdmReader, read_values
from webapp.formats.synth import FORM_OID, ITEM_GROUP_OID, synth_items, synth_values
from webapp.formats.writers import Column, ExportError, columns_for

FAST = settings(max_examples=60, deadline=None, database=None)
COLUMNS = columns_for([("F1", "G1", "HEIGHT"), ("F1", "G1", "WEIGHT"), ("F2", "G2", "AE")])


def row(subject, item, value, *, event="SE1", repeat="1", form="F1", group="G1",
        group_repeat="1"):
    return (subject, event, repeat, form, group, group_repeat, item, value)


VALUES = [
    row("001", "HEIGHT", "180"), row("001", "WEIGHT", "75.5"),
    row("001", "HEIGHT", "181", repeat="2"),
    row("002", "WEIGHT", "-3"),
    row("002", "AE", "headache", form="F2", group="G2"),
    row("002", "AE", "nausea", form="F2", group="G2", group_repeat="2"),
]


def written(fmt, values, columns=COLUMNS, **options) -> bytes:
    out = io.BytesIO()
    writers.write(fmt, out, iter(values), columns=columns, study_oid="S1", **options)
    return out.getvalue()


def csv_rows(data: bytes, delimiter=",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter))


# --- CSV and TSV -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_wide_file_has_a_header_then_a_row_per_subject_event_and_repeat(fmt, delimiter):
    rows = csv_rows(written(fmt, VALUES), delimiter)
    assert rows == [
        ["SubjectKey", "StudyEventOID", "StudyEventRepeatKey", "ItemGroupRepeatKey",
         "HEIGHT", "WEIGHT", "AE"],
        ["001", "SE1", "1", "1", "180", "75.5", ""],
        ["001", "SE1", "2", "1", "181", "", ""],
        ["002", "SE1", "1", "1", "", "-3", "headache"],
        ["002", "SE1", "1", "2", "", "", "nausea"],
    ]


def test_csv_is_utf8_with_crlf_and_quotes_what_needs_quoting():
    data = written("csv", [row("001", "AE", 'said "no", then\nyes – ü', form="F2", group="G2")])
    assert data.split(b"\r\n")[1] == '001,SE1,1,1,,,"said ""no"", then\nyes – ü"'.encode()
    assert csv_rows(data)[1][6] == 'said "no", then\nyes – ü'


def test_tsv_quotes_a_value_with_a_tab_and_reads_back():
    data = written("tsv", [row("001", "HEIGHT", "a\tb")])
    assert csv_rows(data, "\t")[1][4] == "a\tb"


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_cells_that_a_spreadsheet_would_run_as_formulas_get_an_apostrophe(fmt, delimiter):
    dangerous = ["=1+1", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(A1:A9)",
                 "\t=1+1", "\r=1+1", "=HYPERLINK(\"http://x\")"]
    values = [row(f"S{n}", "HEIGHT", v) for n, v in enumerate(dangerous)]
    values.append(row("=subject", "HEIGHT", "1"))
    columns = [Column("F1", "G1", "HEIGHT", "=header")]
    rows = csv_rows(written(fmt, values, columns), delimiter)
    assert rows[0][4] == "'=header"
    assert [r[4] for r in rows[1:-1]] == ["'" + v for v in dangerous]
    assert rows[-1][0] == "'=subject"


def test_plain_numbers_and_ordinary_text_are_left_alone():
    harmless = ["-3", "+1.5", "-0.25", "-1e-3", "+7", "12", "a=b", "x-y", "mail@example.org", ""]
    values = [row(f"S{n}", "HEIGHT", v) for n, v in enumerate(harmless)]
    assert [r[4] for r in csv_rows(written("csv", values))[1:]] == harmless


def test_a_value_of_an_item_outside_the_columns_is_an_error_naming_it():
    with pytest.raises(ExportError, match="item OTHER of form F1, item group G1 .subject 001."):
        written("csv", [row("001", "OTHER", "1")])


def test_an_item_in_two_places_gets_qualified_headers():
    columns = columns_for([("F1", "G1", "DATE"), ("F2", "G2", "DATE"), ("F1", "G1", "X"),
                           ("F1", "G1", "X")])
    assert [c.header for c in columns] == ["F1.G1.DATE", "F2.G2.DATE", "X"]


def test_csv_writing_leaves_the_callers_file_open():
    out = io.BytesIO()
    writers.write_csv(out, iter(VALUES), COLUMNS)
    assert not out.closed
    out.write(b"more")


# --- JSON ------------------------------------------------------------------------------------

def test_json_is_an_array_of_the_same_rows_with_items_nested():
    document = json.loads(written("json", VALUES))
    assert document[0] == {"SubjectKey": "001", "StudyEventOID": "SE1",
                           "StudyEventRepeatKey": "1", "ItemGroupRepeatKey": "1",
                           "items": {"HEIGHT": "180", "WEIGHT": "75.5", "AE": None}}
    assert [(r["SubjectKey"], r["StudyEventRepeatKey"], r["ItemGroupRepeatKey"])
            for r in document] == [("001", "1", "1"), ("001", "2", "1"), ("002", "1", "1"),
                                   ("002", "1", "2")]
    assert len(written("json", VALUES).splitlines()) == 6  # [, four rows, ]


def test_json_of_nothing_is_an_empty_array_and_text_stays_readable():
    assert json.loads(written("json", [])) == []
    data = written("json", [row("001", "HEIGHT", 'ü "q" \n')])
    assert 'ü \\"q\\" \\n'.encode() in data
    assert json.loads(data)[0]["items"]["HEIGHT"] == 'ü "q" \n'


# --- ODM -------------------------------------------------------------------------------------

def test_odm_round_trip_gives_the_same_values_and_item_definitions():
    items = synth_items(12)
    values = list(synth_values(5 * 3 * 12))
    item_defs = [ItemDef(i.oid, i.name, i.data_type, i.length) for i in items]
    data = written("odm", values, item_defs=item_defs, metadata_version_oid="MDV.7")
    parts = list(OdmReader(io.BytesIO(data)))
    assert parts[0] == ClinicalData("S1", "MDV.7", {d.oid: d for d in item_defs})
    assert [r for part in parts[1:] for r in part] == values


def test_odm_round_trip_keeps_repeats_nulls_and_characters_that_need_escaping():
    values = [
        row("a&b", "I1", 'x < y & "z" > \'w\''),
        row("a&b", "I2", None),
        row("a&b", "I1", "line\nnext\r\nlast\ttab  ", group_repeat="2"),
        row("a&b", "I1", "", repeat="3", form="F<2>", group="G\"2"),
        row("é", "I1", "€ 😀 ümlaut"),
    ]
    assert list(read_values(io.BytesIO(written("odm", values)))) == values


XML_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=(
    [chr(c) for c in range(32) if c not in (9, 10, 13)] + ["\ufffe", "\uffff"])), max_size=30)
KEY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
              max_size=8)


@FAST
@given(st.lists(st.tuples(KEY, KEY, st.one_of(st.none(), XML_TEXT)), max_size=20))
def test_any_xml_text_survives_the_odm_round_trip(entries):
    values = sorted({(s, "SE1", "1", "F1", "G1", "1", i, v) for s, i, v in entries},
                    key=lambda r: (r[0], r[6]))
    assert list(read_values(io.BytesIO(written("odm", values)))) == values


def test_an_empty_repeat_key_is_left_out_and_reads_back_as_1():
    data = written("odm", [row("001", "I1", "v", repeat="", group_repeat=None)])
    assert b"RepeatKey" not in data
    assert list(read_values(io.BytesIO(data))) == [row("001", "I1", "v")]


def test_a_character_xml_cannot_carry_is_an_error_naming_the_value():
    with pytest.raises(ExportError, match=r"cannot write item I1 of subject 001 .* U\+0001"):
        written("odm", [row("001", "I1", "bell\x01")])


def test_odm_is_written_while_the_values_are_still_coming():
    out = io.BytesIO()
    sizes = []

    def values():
        for n, value in enumerate(synth_values(3000)):
            if n % 1000 == 999:
                sizes.append(len(out.getvalue()))
            yield value

    writers.write_odm(out, values(), study_oid="S1")
    assert 0 < sizes[0] < sizes[1] < sizes[2] < len(out.getvalue())


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_wide_formats_are_written_while_the_values_are_still_coming(fmt):
    out = io.BytesIO()
    sizes = []
    columns = columns_for((FORM_OID, ITEM_GROUP_OID, item.oid) for item in synth_items(12))

    def values():
        for n, value in enumerate(synth_values(36_000)):
            if n % 12_000 == 11_999:
                sizes.append(len(out.getvalue()))
            yield value

    writers.write(fmt, out, values(), columns=columns, study_oid="S1")
    assert 0 < sizes[0] < sizes[1] < sizes[2] < len(out.getvalue())


# --- the rest --------------------------------------------------------------------------------

def test_digesting_file_counts_size_and_sha256_of_what_was_written():
    out = io.BytesIO()
    digesting = writers.DigestingFile(out)
    writers.write_csv(digesting, iter(VALUES), COLUMNS)
    assert digesting.size == len(out.getvalue())
    assert digesting.sha256 == hashlib.sha256(out.getvalue()).hexdigest()


def test_every_export_format_has_a_writer_and_a_media_type():
    from webapp.models.clinical import FORMAT_EXTENSIONS, ExportFormat

    assert set(writers.MEDIA_TYPES) == {f.value for f in ExportFormat} == set(FORMAT_EXTENSIONS)
    with pytest.raises(ExportError, match="unknown export format 'xls'"):
        written("xls", VALUES)
