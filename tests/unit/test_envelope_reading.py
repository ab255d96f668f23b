"""How validate and load read an envelope's CSV (webapp.linkage.ingest._read), without a database:
what a file holds comes back row for row whatever its encoding, quoting and line ends, and what
cannot be read fails with the file and line a user can look up."""
import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.linkage.chain import StepFailed
from webapp.linkage.ingest import FileSpec, _archive_kind, _read, _unsafe

FAST = settings(max_examples=80, deadline=None, database=None)
COLUMNS = {"id": "id", "first_name": "given", "surname": "family", "dob": "born"}
HEADER = ["id", "given", "family", "born", "note"]


def read(content: bytes, **spec) -> tuple[object, list]:
    layout, rows = _read(FileSpec(name="people.csv", columns=dict(COLUMNS), **spec), io.BytesIO(content))
    return layout, list(rows)


def written(rows, encoding="utf-8", delimiter=",", newline="\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows([HEADER, *rows])
    return out.getvalue().encode(encoding)


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@FAST
@given(rows=st.lists(st.lists(text, min_size=5, max_size=5), max_size=6),
       encoding=st.sampled_from(["utf-8", "utf-16", "utf-32", "gb18030"]),
       delimiter=st.sampled_from([",", ";", "\t", "|"]))
def test_any_text_comes_back_row_for_row(rows, encoding, delimiter):
    # Lines end in CRLF: with "\n" alone, csv.writer leaves a field holding "\r" unquoted, which no reader can tell apart
    layout, got = read(written(rows, encoding, delimiter, "\r\n"), encoding=encoding, delimiter=delimiter)
    assert [fields for _line, fields in got] == rows
    assert layout.index == {"id": 0, "first_name": 1, "surname": 2, "dob": 3}
    assert layout.extra == [("note", 4)]


def test_line_numbers_are_the_lines_an_editor_shows():
    content = b'id,given,family,born,note\nA1,Ann,Smith,1980-01-01,"two\nlines"\n\nA2,Bob,Jones,1970-01-01,x\n'
    _layout, rows = read(content)
    assert [(line, fields[0]) for line, fields in rows] == [(2, "A1"), (5, "A2")]


def test_a_byte_outside_the_encoding_names_its_line():
    content = "id,given,family,born\nA1,Ann,Smith,1980\nA2,Zoë,Smith,1980\n".encode("latin-1")
    with pytest.raises(StepFailed, match=r"^people.csv, line 3: bytes that are not utf-8 \(invalid continuation byte"):
        read(content)


def test_an_endless_line_is_refused_without_reading_it_whole():
    with pytest.raises(StepFailed, match="people.csv, line 2: longer than 1,048,576 bytes"):
        read(b"id,given,family,born\n" + b"x" * (3 << 20))


def test_old_mac_line_ends_are_named():
    with pytest.raises(StepFailed, match="people.csv, line 1: a line break inside a field that is not in quotes"):
        read(b"id,given,family,born\rA1,Ann,Smith,1980\r")


def test_a_byte_order_mark_is_not_part_of_the_first_header():
    layout, rows = read("\ufeffid,given,family,born\nA1,Ann,Smith,1980\n".encode("utf-8"))
    assert layout.index["id"] == 0 and len(rows) == 1


def test_an_implicit_csv_takes_the_delimiter_its_header_holds_most():
    layout, rows = read(b"id;given;family;born\nA1;Ann;Smith, Jr;1980\n", delimiter="")
    assert rows == [(2, ["A1", "Ann", "Smith, Jr", "1980"])]


@pytest.mark.parametrize("name", ["", "../x.csv", "a/../../x.csv", "/etc/passwd", "C:/x.csv", "c:x.csv", "a\\b.csv",
                                  "a\x00.csv", "tab\t.csv"])
def test_unsafe_entry_names(name):
    assert _unsafe(name)


@pytest.mark.parametrize("name", ["people.csv", "data/people.csv", "..people.csv", "a..b.csv", "Ünïcode.csv"])
def test_safe_entry_names(name):
    assert not _unsafe(name)


@pytest.mark.parametrize("head, kind", [(b"PK\x03\x04rest", "zip"), (b"\x1f\x8b\x08", "gzip"),
                                        (b"7z\xbc\xaf\x27\x1c", "7z"), (b"Rar!\x1a\x07\x00", "RAR"),
                                        (b"BZh91AY&SY", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                                        (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x00" * 257 + b"ustar\x0000", "tar"),
                                        (b"BZhang,Li,1980", ""), (b"id,first_name", "")])
def test_archives_known_by_their_first_bytes(head, kind):
    assert _archive_kind(head) == kind
