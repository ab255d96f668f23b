"""The ODM file parsed in a child process (webapp/clinical/parsing.py): the importer gets the same
rows, the same errors (message, line, column) and the same counts as from OdmReader in its own
process, and no parsing process outlives its file or its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webapp.clinical.parsing import Batch, ParsedFile, ParseProcessError
from webapp.formats.odm import ClinicalData, OdmError, OdmReader
from webapp.formats.synth import write_synthetic_odm

ROOT = Path(__file__).resolve().parents[2]
ODM_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">\n')


def synthetic(path: Path, subjects: int, **options) -> Path:
    with open(path, "wb") as out:
        write_synthetic_odm(out, subjects=subjects, **options)
    return path


def in_child(path, **options) -> tuple[list, ParsedFile]:
    """Every part, batches as OdmReader's row lists."""
    with ParsedFile(path, **options) as parsed:
        parts = [part.rows() if isinstance(part, Batch) else part for part in parsed]
    return parts, parsed


def error_in_child(path) -> OdmError:
    with pytest.raises(OdmError) as caught:
        in_child(path)
    return caught.value


def error_in_process(path) -> OdmError:
    with pytest.raises(OdmError) as caught:
        list(OdmReader(path))
    return caught.value


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_the_child_gives_the_rows_and_counts_of_the_reader_in_process(tmp_path):
    path = synthetic(tmp_path / "s.xml", 300)  # 10,800 values: several batches of 1,000
    parts, parsed = in_child(path, batch_size=1000)
    reader = OdmReader(path, batch_size=1000)
    expected = list(reader)
    assert len(parts) == len(expected) > 5
    assert parts == expected  # ClinicalData (with its item definitions) and every row, in order
    assert (parsed.subjects, parsed.study_events, parsed.values, parsed.bytes_read) == (
        reader.subjects, reader.study_events, reader.values, reader.bytes_read) == (300, 900, 10_800,
                                                                                   path.stat().st_size)


def test_each_clinical_data_restarts_the_item_list_and_null_values_stay_none(tmp_path):
    path = tmp_path / "two.xml"
    path.write_text(
        ODM_HEAD + '<ClinicalData StudyOID="A"><SubjectData SubjectKey="S1"><StudyEventData StudyEventOID="E">'
        '<FormData FormOID="F"><ItemGroupData ItemGroupOID="G"><ItemData ItemOID="I.X" Value="a&#9;b"/>'
        '<ItemData ItemOID="I.Y" IsNull="Yes"/></ItemGroupData></FormData></StudyEventData></SubjectData>'
        '</ClinicalData><ClinicalData StudyOID="B"><SubjectData SubjectKey="S2"><StudyEventData '
        'StudyEventOID="E" StudyEventRepeatKey="2"><FormData FormOID="F"><ItemGroupData ItemGroupOID="G">'
        '<ItemData ItemOID="I.Z" Value="é"/></ItemGroupData></FormData></StudyEventData></SubjectData>'
        '</ClinicalData></ODM>', encoding="utf-8")
    with ParsedFile(path) as parsed:
        parts = list(parsed)
    assert [type(part) for part in parts] == [ClinicalData, Batch, ClinicalData, Batch]
    assert parts[1].rows() == [("S1", "E", "1", "F", "G", "1", "I.X", "a\tb"),
                               ("S1", "E", "1", "F", "G", "1", "I.Y", None)]
    assert parts[3].items == ["I.Z"] and parts[3].rows() == [("S2", "E", "2", "F", "G", "1", "I.Z", "é")]


@pytest.mark.parametrize("name, content", [
    ("truncated.xml", None),
    ("laughs.xml", '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n<ODM>&lol;</ODM>'),
    ("xxe.xml", '<?xml version="1.0"?><!DOCTYPE ODM [<!ENTITY x SYSTEM "file:///etc/passwd">]><ODM>&x;</ODM>'),
    ("rss.xml", '<?xml version="1.0"?><rss version="2.0"><channel/></rss>'),
    ("empty.xml", ""),
    ("mismatch.xml", ODM_HEAD + '<ClinicalData StudyOID="A"><SubjectData SubjectKey="S1">\n</ClinicalData></ODM>'),
    ("no-key.xml", ODM_HEAD + '<ClinicalData StudyOID="A"><SubjectData></SubjectData></ClinicalData></ODM>'),
])
def test_errors_cross_over_as_the_same_odm_error_with_line_and_column(tmp_path, name, content):
    path = tmp_path / name
    if content is None:  # an error after several batches were sent
        data = synthetic(tmp_path / "big.xml", 500).read_bytes()
        path.write_bytes(data[:len(data) - 5000])
    else:
        path.write_text(content, encoding="utf-8")
    child, own = error_in_child(path), error_in_process(path)
    assert (child.message, child.line, child.column, str(child)) == (own.message, own.line, own.column, str(own))
    if name in ("truncated.xml", "laughs.xml", "mismatch.xml"):
        assert child.line is not None and child.column is not None, child


def test_a_value_too_long_for_its_item_is_refused_with_the_readers_message(tmp_path):
    path = synthetic(tmp_path / "s.xml", 50)
    limits = {"I_VS_AETERM": 5}  # "mild headache" and others are longer
    with pytest.raises(OdmError) as child, ParsedFile(path, batch_size=100) as parsed:
        for part in parsed:
            if isinstance(part, ClinicalData):
                parsed.max_lengths = limits
    reader = OdmReader(path, batch_size=100)
    with pytest.raises(OdmError) as own:
        for part in reader:
            if isinstance(part, ClinicalData):
                reader.max_lengths = limits
    assert str(child.value) == str(own.value)
    assert "I_VS_AETERM is 11 characters long, more than its 5 (subject SUBJ-0000001" in str(child.value)


def test_a_missing_file_raises_file_not_found_in_the_importer_and_starts_no_process(tmp_path):
    before = children_of(os.getpid())
    with pytest.raises(FileNotFoundError):
        with ParsedFile(tmp_path / "gone.xml"):
            pass
    assert children_of(os.getpid()) == before


def test_leaving_a_file_half_read_ends_its_parsing_process(tmp_path):
    path = synthetic(tmp_path / "s.xml", 3000)  # more than the pipe holds: the child is left waiting
    with ParsedFile(path, batch_size=1000) as parsed:
        pid = parsed.pid
        next(iter(parsed))
        assert running(pid)
    assert not running(pid) and pid not in children_of(os.getpid())


def test_a_parsing_process_killed_midway_is_an_error_naming_the_signal(tmp_path):
    path = synthetic(tmp_path / "s.xml", 3000)
    with pytest.raises(ParseProcessError, match="ended unexpectedly \\(killed by signal 9\\)"):
        with ParsedFile(path, batch_size=1000) as parsed:
            parts = iter(parsed)
            next(parts)
            os.kill(parsed.pid, signal.SIGKILL)  # the kernel's OOM killer, say
            list(parts)


CHILD_OF_KILLED = """
import sys, time
sys.path.insert(0, {root!r})
from webapp.clinical.parsing import ParsedFile
parsed = ParsedFile({path!r}, batch_size=1000).__enter__()
next(iter(parsed))
print(parsed.pid, flush=True)
time.sleep(60)
"""


def test_a_killed_importer_leaves_no_parsing_process(tmp_path):
    path = synthetic(tmp_path / "s.xml", 3000)
    importer = subprocess.Popen([sys.executable, "-c", CHILD_OF_KILLED.format(root=str(ROOT), path=str(path))],
                                stdout=subprocess.PIPE, text=True)
    try:
        child = int(importer.stdout.readline())
        assert running(child)
        importer.send_signal(signal.SIGKILL)  # as when a work horse is killed: no finally runs
        importer.wait(10)
        deadline = time.monotonic() + 10
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(child)
    finally:
        importer.kill()
        importer.wait()
