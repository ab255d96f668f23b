"""Tests for webapp.formats.odm: what an import reads from an ODM file, and what it refuses."""

from __future__ import annotations

import io
import socket
import time

import pytest

from webapp.formats.odm import ODM_NS, ClinicalData, ItemDef, OdmError, OdmReader, read_values
from webapp.formats.synth import synth_values, write_synthetic_odm

PROLOG = '<?xml version="1.0" encoding="UTF-8"?>\n'


def odm(clinical: str, *, before: str = "", ns: str = ODM_NS, prolog: str = PROLOG) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    return f"{prolog}<ODM{xmlns}>\n{before}{clinical}\n</ODM>\n".encode()


def clinical(subjects: str, study: str = "S1") -> str:
    return f'<ClinicalData StudyOID="{study}" MetaDataVersionOID="v1">\n{subjects}\n</ClinicalData>'


def subject(key: str, items: str, *, event: str = 'StudyEventOID="SE1"',
            group: str = 'ItemGroupOID="IG1"') -> str:
    return (f'<SubjectData SubjectKey="{key}"><StudyEventData {event}><FormData FormOID="F1">'
            f"<ItemGroupData {group}>{items}</ItemGroupData></FormData></StudyEventData>"
            f"</SubjectData>")


def refusal(data: bytes, tmp_path) -> OdmError:
    path = tmp_path / "import.xml"
    path.write_bytes(data)
    with pytest.raises(OdmError) as caught:
        list(OdmReader(path))
    return caught.value


@pytest.fixture
def synthetic(tmp_path):
    path = tmp_path / "synthetic.xml"
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=20, study_oid="S_A")
    return path


# --- what is read ----------------------------------------------------------------------------

def test_reads_every_value_with_its_keys_after_its_clinical_data(synthetic):
    reader = OdmReader(synthetic)
    parts = list(reader)
    assert parts[0] == ClinicalData("S_A", "MDV.1", parts[0].item_defs)
    rows = [row for part in parts[1:] for row in part]
    assert rows == list(synth_values(20 * 3 * 12))
    assert rows[0] == ("SUBJ-0000001", "SE_VISIT1", "1", "F_VITALS", "IG_VITALS", "1",
                       "I_VS_SYSBP", "102")
    assert (reader.subjects, reader.study_events, reader.values) == (20, 60, 720)
    assert reader.bytes_read == synthetic.stat().st_size


def test_item_definitions_are_read_from_the_metadata(synthetic):
    reader = OdmReader(synthetic)
    start = next(iter(reader))
    assert len(start.item_defs) == 12
    assert start.item_defs["I_VS_SYSBP"] == ItemDef("I_VS_SYSBP", "SYSBP", "integer", 3)
    assert start.item_defs["I_VS_VSDAT"] == ItemDef("I_VS_VSDAT", "VSDAT", "date", None)
    assert start.item_defs["I_VS_AETERM"].length == 40
    assert reader.item_defs[("S_A", "MDV.1")] is start.item_defs


def test_a_file_without_metadata_has_no_item_definitions(tmp_path):
    path = tmp_path / "plain.xml"
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=2, metadata=False)
    parts = list(OdmReader(path))
    assert parts[0].item_defs == {}
    assert sum(len(p) for p in parts[1:]) == 72


def test_same_rows_whatever_the_chunk_and_batch_sizes(synthetic):
    expected = list(read_values(synthetic))
    for chunk_size, batch_size in ((7, 1), (100, 13), (1 << 20, 100_000)):
        parts = list(OdmReader(synthetic, chunk_size=chunk_size, batch_size=batch_size))
        assert [row for part in parts[1:] for row in part] == expected
        assert all(len(part) >= batch_size for part in parts[1:-1])


def test_a_batch_never_spans_two_clinical_data_elements():
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="a"/>'), "S1")
               + clinical(subject("2", '<ItemData ItemOID="B" Value="b"/>'), "S2"))
    parts = list(OdmReader(io.BytesIO(data)))
    assert [p.study_oid if isinstance(p, ClinicalData) else [r[0] for r in p] for p in parts] == [
        "S1", ["1"], "S2", ["2"]]


def test_absent_repeat_keys_read_as_1_and_a_null_value_as_none():
    data = odm(clinical(
        subject("1", '<ItemData ItemOID="A" IsNull="Yes"/><ItemData ItemOID="B" Value=""/>')
        + subject("2", '<ItemData ItemOID="A" Value="x"/>',
                  event='StudyEventOID="SE1" StudyEventRepeatKey="3"',
                  group='ItemGroupOID="IG1" ItemGroupRepeatKey="2"')))
    assert list(read_values(io.BytesIO(data))) == [
        ("1", "SE1", "1", "F1", "IG1", "1", "A", None),
        ("1", "SE1", "1", "F1", "IG1", "1", "B", ""),
        ("2", "SE1", "3", "F1", "IG1", "2", "A", "x"),
    ]


def test_escaped_characters_and_character_references_are_decoded():
    value = "a&amp;b &lt;c&gt; &quot;q&quot; &#233;&#x20AC; line&#10;two"
    data = odm(clinical(subject("1", f'<ItemData ItemOID="A" Value="{value}"/>')))
    assert list(read_values(io.BytesIO(data)))[0][7] == 'a&b <c> "q" é€ line\ntwo'


def test_oids_are_interned_so_a_batch_holds_each_once():
    data = odm(clinical(subject("1", '<ItemData ItemOID="ITEM" Value="1"/>')
                        + subject("2", '<ItemData ItemOID="ITEM" Value="2"/>')))
    first, second = read_values(io.BytesIO(data))
    assert all(a is b for a, b in zip(first[1:7], second[1:7]))


def test_other_namespaces_and_audit_elements_are_skipped():
    data = odm(clinical(
        '<SubjectData xmlns:OC="http://www.openclinica.org/ns/odm_ext_v130/v3.1" '
        'SubjectKey="1" OC:Status="signed"><OC:AuditLogs><OC:AuditLog ID="x"/></OC:AuditLogs>'
        '<StudyEventData StudyEventOID="SE1"><FormData FormOID="F1" OC:Version="v1">'
        '<ItemGroupData ItemGroupOID="IG1"><ItemData ItemOID="A" Value="1">'
        "<AuditRecord><UserRef UserOID='u'/><LocationRef LocationOID='l'/>"
        "<DateTimeStamp>2026-01-01T00:00:00</DateTimeStamp></AuditRecord></ItemData>"
        "</ItemGroupData></FormData></StudyEventData></SubjectData>"))
    assert list(read_values(io.BytesIO(data))) == [("1", "SE1", "1", "F1", "IG1", "1", "A", "1")]


def test_reference_data_is_not_read_as_a_subject():
    reference = ('<ReferenceData StudyOID="S1" MetaDataVersionOID="v1">'
                 '<ItemGroupData ItemGroupOID="IG_REF"><ItemData ItemOID="R" Value="r"/>'
                 "</ItemGroupData></ReferenceData>\n")
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="1"/>')), before=reference)
    assert [row[6] for row in read_values(io.BytesIO(data))] == ["A"]


def test_odm_without_a_namespace_and_odm_1_2_are_read():
    body = clinical(subject("1", '<ItemData ItemOID="A" Value="1"/>'))
    for ns in ("", "http://www.cdisc.org/ns/odm/v1.2"):
        assert len(list(read_values(io.BytesIO(odm(body, ns=ns))))) == 1


def test_a_file_in_the_encoding_it_declares_is_read():
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="café"/>')),
               prolog='<?xml version="1.0" encoding="ISO-8859-1"?>\n')
    latin = data.decode().encode("latin-1")
    assert list(read_values(io.BytesIO(latin)))[0][7] == "café"


def test_memory_stays_flat_while_reading(tmp_path):
    path = tmp_path / "big.xml"
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=8000)  # about 20 MB, 288,000 values
    before = _rss_mb()
    highest = before
    for part in OdmReader(path, batch_size=5000):
        highest = max(highest, _rss_mb())
    # A tree of the whole file would take hundreds of MB; a batch and a chunk take a few.
    assert highest - before < 40


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- what is refused -------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused_with_where_it_ends(synthetic, tmp_path, keep):
    whole = synthetic.read_bytes()
    cut = whole[: int(len(whole) * keep)]
    error = refusal(cut, tmp_path)
    assert "truncated" in str(error)
    assert error.line == cut.count(b"\n") + 1 or error.line == cut.count(b"\n")
    assert error.column is not None


def test_a_file_cut_after_a_whole_subject_is_refused_too(tmp_path):
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="1"/>')))
    cut = data[: data.index(b"</ClinicalData>")]
    error = refusal(cut, tmp_path)
    assert "truncated" in str(error)
    assert error.line is not None


def test_an_empty_file_is_refused(tmp_path):
    error = refusal(b"", tmp_path)
    assert str(error) == "the file is empty (0 bytes)"


def test_billion_laughs_is_refused_before_any_expansion(tmp_path):
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{n} "{(f"&lol{n - 1};" if n > 1 else "&lol;") * 10}">' for n in range(1, 10))
    data = (f'<?xml version="1.0"?>\n<!DOCTYPE ODM [{entities}]>\n'
            f'<ODM xmlns="{ODM_NS}"><ClinicalData StudyOID="&lol9;"/></ODM>\n').encode()
    started = time.monotonic()
    error = refusal(data, tmp_path)
    assert time.monotonic() - started < 1
    assert "DOCTYPE" in error.message and "entit" in error.message
    assert (error.line, error.column) == (2, 1)


def test_an_external_file_entity_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = (f'<?xml version="1.0"?>\n<!DOCTYPE ODM [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
            f'<ODM xmlns="{ODM_NS}"><ClinicalData StudyOID="S1">'
            + subject("&xxe;", '<ItemData ItemOID="A" Value="&xxe;"/>')
            + "</ClinicalData></ODM>\n").encode()
    error = refusal(data, tmp_path)
    assert "DOCTYPE" in str(error)
    assert "TOP-SECRET" not in str(error)


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE ODM [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/secret">]>',
    '<!DOCTYPE ODM SYSTEM "http://127.0.0.1:{port}/odm.dtd">',
    '<!DOCTYPE ODM [<!ENTITY % remote SYSTEM "http://127.0.0.1:{port}/x.dtd"> %remote;]>',
])
def test_a_network_entity_or_dtd_is_refused_and_never_fetched(tmp_path, doctype):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        data = (f'<?xml version="1.0"?>\n{doctype.format(port=port)}\n'
                f'<ODM xmlns="{ODM_NS}"><ClinicalData StudyOID="&xxe;"/></ODM>\n').encode()
        error = refusal(data, tmp_path)
        assert "DOCTYPE" in str(error)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_a_file_that_is_not_utf8_is_refused_with_line_and_column(tmp_path):
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="café"/>')))
    latin = data.decode().encode("latin-1")
    error = refusal(latin, tmp_path)
    assert "not valid UTF-8" in str(error)
    line = next(n for n, text in enumerate(latin.split(b"\n"), 1) if b"caf" in text)
    assert error.line == line
    assert error.column is not None


def test_a_file_not_in_the_encoding_it_declares_is_refused(tmp_path):
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="\u00ff\u00fe"/>')),
               prolog='<?xml version="1.0" encoding="UTF-8"?>\n').replace(
        "ÿþ".encode(), b"\xff\xfe")
    error = refusal(data, tmp_path)
    assert "encoding it declares" in str(error)
    assert error.line == 4


@pytest.mark.parametrize("document, named", [
    ('<rss version="2.0"><channel/></rss>', "its root element is rss, not ODM"),
    ('<feed xmlns="http://www.w3.org/2005/Atom"/>',
     "its root element is feed (namespace http://www.w3.org/2005/Atom), not ODM"),
    ('<ODM xmlns="http://www.cdisc.org/ns/odm/v2.0"/>', "namespace 'http://www.cdisc.org/ns/odm/v2.0'"),
])
def test_a_root_that_is_not_odm_is_refused_by_name(tmp_path, document, named):
    error = refusal(f"{PROLOG}{document}\n".encode(), tmp_path)
    assert named in str(error)


def test_odm_without_clinical_data_is_refused(tmp_path):
    data = odm('<Study OID="S1"><MetaDataVersion OID="v1" Name="v1">'
               '<ItemDef OID="A" Name="A" DataType="text"/></MetaDataVersion></Study>')
    error = refusal(data, tmp_path)
    assert str(error) == "the root element is ODM but it has no ClinicalData: nothing to import"


def test_content_after_the_root_is_not_taken_for_truncation(tmp_path):
    data = odm(clinical(subject("1", '<ItemData ItemOID="A" Value="1"/>'))) + b"<ODM/>\n"
    error = refusal(data, tmp_path)
    assert "not well-formed XML: Extra content at the end of the document" in str(error)
    assert error.line == data.count(b"\n")


def test_a_file_whose_root_never_comes_is_refused_without_reading_it_all(tmp_path):
    data = b"<!--" + b"x" * 3_000_000 + b"-->"
    reader = OdmReader(io.BytesIO(data))
    with pytest.raises(OdmError, match="no root element in the first 1 MB"):
        list(reader)


def test_a_file_that_is_not_xml_is_refused(tmp_path):
    error = refusal(b"SubjectKey,Value\n1,2\n", tmp_path)
    assert "not well-formed XML" in str(error)
    assert (error.line, error.column) == (1, 1)


@pytest.mark.parametrize("items, message", [
    ('<ItemData Value="1"/>', "ItemData without its ItemOID attribute (in subject 7, study event "
                              "SE1, repeat 1, form F1, item group IG1, repeat 1)"),
    ('<ItemDataString ItemOID="A">x</ItemDataString>', "ItemDataString (a typed ItemData) is "
                                                        "not supported"),
])
def test_items_the_reader_cannot_take_are_refused_with_their_place(tmp_path, items, message):
    error = refusal(odm(clinical(subject("7", items))), tmp_path)
    assert message in str(error)


def test_an_item_outside_an_item_group_is_refused(tmp_path):
    data = odm(clinical('<SubjectData SubjectKey="7"><StudyEventData StudyEventOID="SE1">'
                        '<FormData FormOID="F1"><ItemData ItemOID="A" Value="1"/></FormData>'
                        "</StudyEventData></SubjectData>"))
    error = refusal(data, tmp_path)
    assert "ItemData outside an ItemGroupData (in subject 7, study event SE1" in str(error)


def test_a_repeating_form_is_refused(tmp_path):
    data = odm(clinical('<SubjectData SubjectKey="7"><StudyEventData StudyEventOID="SE1">'
                        '<FormData FormOID="F1" FormRepeatKey="2"><ItemGroupData '
                        'ItemGroupOID="IG1"><ItemData ItemOID="A" Value="1"/></ItemGroupData>'
                        "</FormData></StudyEventData></SubjectData>"))
    assert "FormRepeatKey '2'" in str(refusal(data, tmp_path))


def test_a_value_longer_than_its_item_allows_is_refused_once_lengths_are_set():
    data = odm(clinical(subject("7", '<ItemData ItemOID="A" Value="12345"/>'
                                     '<ItemData ItemOID="B" Value="123456"/>')))
    reader = OdmReader(io.BytesIO(data))
    with pytest.raises(OdmError) as caught:
        for part in reader:
            if isinstance(part, ClinicalData):
                reader.max_lengths = {"A": 5, "B": 5}
    assert str(caught.value).startswith("value of B is 6 characters long, more than its 5 "
                                        "(subject 7, study event SE1")


def test_a_reader_reads_once(synthetic):
    reader = OdmReader(synthetic)
    list(reader)
    with pytest.raises(RuntimeError):
        list(reader)
