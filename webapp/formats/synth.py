"""Synthetic CDISC ODM 1.3 files of any size, written as they are generated (flat memory).

Used by the benchmarks, the tests and demo data: `write_synthetic_odm(out, subjects=…)`, or
`subjects_for_size(mb)` to aim at a file size. Values are deterministic (no randomness), mixed
like real data: integers, decimals, dates, short codes and free text with characters that need
escaping (`&`, `<`, quotes, non-ASCII).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator
from xml.sax.saxutils import quoteattr

from webapp.formats.odm import ODM_NS

# Per item: (name, data type, length, a pool of values cycled through), cycled for more items.
_POOLS = (
    ("SYSBP", "integer", 3, [str(n) for n in range(95, 180)]),
    ("TEMP", "float", 4, [f"{n / 10:.1f}" for n in range(355, 410)]),
    ("VSDAT", "date", None, [f"2026-{m:02d}-{d:02d}" for m in range(1, 13) for d in (1, 9, 17, 25)]),
    ("SEX", "text", 1, ["M", "F"]),
    ("AETERM", "text", 40, ["none", "mild headache", "nausea & vomiting", 'said "fine"',
                            "a < b", "Übelkeit", "dolor de cabeza", "très fatigué"]),
    ("PULSE", "integer", 3, [str(n) for n in range(50, 130, 3)]),
    ("WEIGHT", "float", 5, [f"{n / 10:.1f}" for n in range(450, 1300, 7)]),
    ("SMOKER", "text", 3, ["Y", "N", "UNK"]),
)


@dataclass(frozen=True)
class SynthItem:
    oid: str
    name: str
    data_type: str
    length: int | None
    pool: list[str]


def synth_items(count: int = 12) -> list[SynthItem]:
    """The item definitions of a synthetic file: I_001 … with cycling data types."""
    items = []
    for n in range(count):
        name, data_type, length, pool = _POOLS[n % len(_POOLS)]
        if n >= len(_POOLS):
            name = f"{name}{n // len(_POOLS) + 1}"
        items.append(SynthItem(f"I_VS_{name}", name, data_type, length, pool))
    return items


def synth_events(count: int = 3) -> list[str]:
    return [f"SE_VISIT{n + 1}" for n in range(count)]


FORM_OID = "F_VITALS"
ITEM_GROUP_OID = "IG_VITALS"


def subjects_for_size(megabytes: float, events: int = 3, items: int = 12) -> int:
    """How many subjects make a file of about `megabytes` MB (10^6 bytes) with this layout."""
    sample = io.BytesIO()
    write_synthetic_odm(sample, subjects=100, events=events, items=items, metadata=False)
    per_subject = len(sample.getvalue()) / 100
    return max(1, round(megabytes * 1_000_000 / per_subject))


def write_synthetic_odm(out, *, subjects: int, events: int = 3, items: int = 12,
                        study_oid: str = "S_SYNTH", metadata: bool = True,
                        first_subject: int = 1) -> int:
    """Write an ODM 1.3 file to the binary file object `out`; returns the number of values.

    One ClinicalData for `study_oid`: `subjects` subjects × `events` study events × one form
    with one item group of `items` items. With `metadata`, a Study/MetaDataVersion with the
    ItemDefs comes first.
    """
    item_defs = synth_items(items)
    event_oids = synth_events(events)
    study = quoteattr(study_oid)
    write = out.write
    write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    write((f'<ODM xmlns="{ODM_NS}" ODMVersion="1.3.2" FileType="Snapshot"'
           f' FileOID="SYNTH.{study_oid}" CreationDateTime="2026-01-01T00:00:00">\n').encode())
    if metadata:
        write(_metadata_xml(study, event_oids, item_defs).encode())
    write(f'<ClinicalData StudyOID={study} MetaDataVersionOID="MDV.1">\n'.encode())
    pools = [(item.oid, [quoteattr(v) for v in item.pool]) for item in item_defs]
    for s in range(first_subject, first_subject + subjects):
        parts = [f'<SubjectData SubjectKey="SUBJ-{s:07d}">\n']
        for e, event_oid in enumerate(event_oids):
            parts.append(f' <StudyEventData StudyEventOID="{event_oid}" StudyEventRepeatKey="1">\n'
                         f'  <FormData FormOID="{FORM_OID}">\n'
                         f'   <ItemGroupData ItemGroupOID="{ITEM_GROUP_OID}"'
                         f' ItemGroupRepeatKey="1">\n')
            for i, (item_oid, pool) in enumerate(pools):
                value = pool[(s * 7 + e * 3 + i) % len(pool)]
                parts.append(f'    <ItemData ItemOID="{item_oid}" Value={value}/>\n')
            parts.append('   </ItemGroupData>\n  </FormData>\n </StudyEventData>\n')
        parts.append('</SubjectData>\n')
        write("".join(parts).encode())
    write(b"</ClinicalData>\n</ODM>\n")
    return subjects * events * items


def _metadata_xml(study: str, event_oids: list[str], item_defs: list[SynthItem]) -> str:
    lines = [f'<Study OID={study}>\n <GlobalVariables><StudyName>Synthetic</StudyName>'
             '<StudyDescription>Generated</StudyDescription><ProtocolName>SYNTH</ProtocolName>'
             '</GlobalVariables>\n <MetaDataVersion OID="MDV.1" Name="Version 1">\n']
    for oid in event_oids:
        lines.append(f'  <StudyEventDef OID="{oid}" Name="{oid}" Repeating="No" Type="Scheduled">'
                     f'<FormRef FormOID="{FORM_OID}" Mandatory="Yes"/></StudyEventDef>\n')
    lines.append(f'  <FormDef OID="{FORM_OID}" Name="Vitals" Repeating="No">'
                 f'<ItemGroupRef ItemGroupOID="{ITEM_GROUP_OID}" Mandatory="Yes"/></FormDef>\n')
    lines.append(f'  <ItemGroupDef OID="{ITEM_GROUP_OID}" Name="Vitals" Repeating="No">')
    lines.extend(f'<ItemRef ItemOID="{item.oid}" Mandatory="No"/>' for item in item_defs)
    lines.append('</ItemGroupDef>\n')
    for item in item_defs:
        length = f' Length="{item.length}"' if item.length else ""
        lines.append(f'  <ItemDef OID="{item.oid}" Name="{item.name}"'
                     f' DataType="{item.data_type}"{length}/>\n')
    lines.append(' </MetaDataVersion>\n</Study>\n')
    return "".join(lines)


def synth_values(count: int, *, events: int = 3, items: int = 12) -> Iterator[tuple]:
    """`count` value rows as the reader yields them, in export order (subject, event, item)."""
    item_defs = synth_items(items)
    event_oids = synth_events(events)
    made = 0
    subject = 0
    while made < count:
        subject += 1
        key = f"SUBJ-{subject:07d}"
        for e, event_oid in enumerate(event_oids):
            for i, item in enumerate(item_defs):
                yield (key, event_oid, "1", FORM_OID, ITEM_GROUP_OID, "1", item.oid,
                       item.pool[(subject * 7 + e * 3 + i) % len(item.pool)])
                made += 1
                if made == count:
                    return
