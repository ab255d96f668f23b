"""A synthetic population of person records with known truth, for the bench, tests and demo.

People live in households (shared surname and postcode, different first names and dates of
birth, now and then twins), so that the easy blocks hold look-alikes that are *not* the same
person. A share of the records are extra copies of people already present, each changed in
one or two of the ways registries differ: typos, nicknames, first name and surname swapped,
day and month swapped or a digit off in the date of birth, a moved or missing postcode, a
missing date or sex, a surname changed at marriage, and the formatting a person keys in
(case, accents, spaces, the date written in one of several formats).

Names are built in (a few hundred of each; frequencies fall with rank, as in real registers),
so nothing is downloaded. Everything comes from `random.Random(seed)`: same seed, same data.
"""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from datetime import date, timedelta
from itertools import combinations
from pathlib import Path

FEMALE = """olivia amelia isla ava mia ivy lily isabella rosie sophia grace freya willow florence
emily ella poppy evie elsie charlotte evelyn sienna sofia daisy phoebe sophie alice harper
matilda ruby emilia maya millie esme ellie margaret elizabeth mary patricia jennifer linda
barbara susan jessica sarah karen nancy lisa betty dorothy sandra ashley kimberly donna carol
michelle emma amanda melissa deborah stephanie rebecca laura sharon cynthia kathleen helen amy
shirley angela anna brenda pamela nicole katherine samantha christine catherine virginia debra
rachel janet carolyn maria heather diane julie joyce victoria kelly christina joan evelyn
lauren judith olga megan cheryl andrea hannah martha jacqueline frances gloria ann teresa
kathryn sara janice jean alexandra madison doris abigail julia judy marie denise beverly
danielle theresa marilyn diana natalie brittany charlotte kayla alexis lori zoe chloe jade
leah holly eleanor beatrice harriet imogen lucy georgia molly scarlett aisha fatima zainab
maryam amira priya ananya deepa sunita chen mei yuki sakura ngozi chioma amara noor layla
ines lucia carmen marta elena agnieszka katarzyna zofia ewa aleksandra ingrid astrid sigrid
freja saoirse siobhan aoife niamh ciara roisin eilidh morag catriona seren carys bethan
ffion nia cerys megan""".split()

MALE = """oliver george noah arthur muhammad leo oscar harry archie jack henry charlie freddie
theodore thomas finley theo alfie jacob william isaac tommy lucas james joshua arlo alexander
samuel daniel edward joseph max logan elijah louie reuben luca albert sebastian mason ethan
benjamin harrison michael robert john david richard christopher matthew anthony mark donald
steven paul andrew kenneth kevin brian george timothy ronald jason jeffrey ryan gary nicholas
eric stephen jonathan larry justin scott brandon frank gregory raymond patrick jack dennis
jerry tyler aaron jose adam nathan henry douglas zachary peter kyle walter harold jeremy carl
keith roger gerald christian terry sean arthur austin noah lawrence jesse joe bryan billy
jordan albert dylan bruce willie gabriel alan juan logan wayne ralph roy eugene randy vincent
russell louis philip bobby johnny bradley liam callum connor declan ciaran padraig eoin
cormac fergus angus hamish rhys dafydd gareth owain ieuan ahmed omar yusuf ibrahim hassan
ali bilal imran raj arjun vikram sanjay wei jun hiroshi kenji chinedu emeka tunde kwame
mateusz piotr krzysztof tomasz jakub lars erik anders nils jan pieter luuk diego carlos
javier miguel pablo marco giovanni luigi francesco stefan andrei mihai""".split()

SURNAMES = """smith jones williams taylor brown davies evans wilson thomas johnson roberts
robinson thompson wright walker white edwards hughes green hall lewis harris clarke patel
jackson wood turner martin cooper hill ward morris moore clark lee king baker harrison
morgan allen james scott phillips watson davis parker price bennett young griffiths mitchell
kelly cook carter richardson bailey collins bell shaw murphy miller cox richards khan
marshall anderson simpson ellis adams singh begum wilkinson foster chapman powell webb rogers
gray mason ali hunt hussain campbell matthews owen palmer holmes mills barnes knight lloyd
butler russell barker fisher stevens jenkins murray dixon harvey graham pearson ahmed fletcher
walsh kaur gibson howard andrews stewart elliott reynolds saunders payne fox ford pearce day
brooks west lawrence cole atkinson bradley spencer gill dawson ball burton obrien watts rose
booth perry ryan grant wells armstrong francis rees hayes hart hudson newman barrett webster
hunter gregory carr lowe page marsh riley dunn woods parsons berry stone reid holland hawkins
harding porter robertson newton oliver reed kennedy williamson bird gardner shah dean lane
cooke bates henderson parry burgess bishop walton burns nicholson shepherd ross cross long
freeman warren nicholls hamilton byrne sutton mcdonald yates hodgson robson curtis hopkins
oconnor harper coleman watkins moss mccarthy chambers obrien griffin sharp hardy wheeler
potter osborne johnston gordon doyle wallace george jordan hutchinson rowe burke may pritchard
gilbert willis higgins read miles stevenson stephenson hammond arnold buckley walters
hewitt barber nelson slater austin sullivan whitehouse randall brennan ahmad mahmood iqbal
rahman islam akhtar chowdhury miah uddin nguyen tran le pham wang zhang li liu chen yang huang
zhao wu zhou kim park choi tanaka suzuki sato okafor okonkwo adeyemi mensah boateng asante
diallo traore nowak kowalski wisniewski wojcik kaminski lewandowski zielinski muller schmidt
schneider fischer weber meyer wagner becker schulz hoffmann garcia rodriguez martinez
hernandez lopez gonzalez perez sanchez ramirez torres rossi russo ferrari esposito bianchi
romano colombo ricci silva santos ferreira pereira oliveira costa rodrigues martins jansen
devries bakker visser smit meijer mulder bos vos peters hendriks dekker johansson andersson
karlsson nilsson eriksson larsson olsen hansen nielsen jensen petersen popescu ionescu
popa dimitrov ivanov petrov sokolov novak horvat kovac papadopoulos demir yilmaz kaya celik
sahin mcallister mackenzie macleod mcgregor mclean mackay fraser cameron sinclair munro
lindsay drummond buchanan ferguson""".split()

# Written forms that normalise back to the plain name (what people key in differently).
STYLED = {"obrien": "O'Brien", "oconnor": "O'Connor", "muller": "Müller", "garcia": "García",
          "hernandez": "Hernández", "lopez": "López", "perez": "Pérez", "sanchez": "Sánchez",
          "ramirez": "Ramírez", "gonzalez": "González", "martinez": "Martínez", "zoe": "Zoë",
          "devries": "de Vries", "mcdonald": "McDonald", "saoirse": "Saoirse", "ines": "Inés",
          "lucia": "Lucía", "wisniewski": "Wiśniewski", "wojcik": "Wójcik", "celik": "Çelik",
          "sahin": "Şahin", "kovac": "Kovač", "nils": "Nils", "chloe": "Chloé"}

DOUBLE_BARRELLED_SHARE = 0.03

NICKNAMES = {"william": ["bill", "will"], "robert": ["bob", "rob"], "elizabeth": ["liz", "beth"],
             "margaret": ["maggie", "peggy"], "james": ["jim", "jamie"], "richard": ["rick"],
             "katherine": ["kate", "kathy"], "catherine": ["cathy", "kate"], "thomas": ["tom"],
             "michael": ["mike"], "christopher": ["chris"], "jennifer": ["jen", "jenny"],
             "alexander": ["alex"], "alexandra": ["alex", "sandra"], "daniel": ["dan", "danny"],
             "matthew": ["matt"], "jonathan": ["jon"], "samuel": ["sam"], "benjamin": ["ben"],
             "edward": ["ed", "ted"], "victoria": ["vicky"], "rebecca": ["becky"],
             "susan": ["sue"], "patricia": ["pat", "trish"], "anthony": ["tony"],
             "joseph": ["joe"], "nicholas": ["nick"], "deborah": ["debbie"],
             "jessica": ["jess"], "abigail": ["abby"], "theodore": ["theo", "ted"],
             "frederick": ["fred"], "harold": ["harry"], "gregory": ["greg"],
             "stephen": ["steve"], "steven": ["steve"], "timothy": ["tim"], "peter": ["pete"]}

UK_AREAS = """AB B BA BB BD BH BL BN BR BS CA CB CF CH CM CO CR CT CV CW DA DD DE DH DL DN DT
DY E EC EH EN EX FK FY G GL GU HA HD HG HP HU HX IG IP KA KT KY L LA LD LE LL LN LS LU M ME MK
ML N NE NG NN NP NR NW OL OX PA PE PH PL PO PR RG RH RM S SA SE SG SK SL SM SN SO SP SR SS ST
SW SY TA TD TF TN TQ TR TS TW UB W WA WD WF WN WR WS WV YO""".split()

LATEST_BIRTH = date(2024, 12, 31)


def _zipf_weights(count: int) -> list[float]:
    """Frequencies that fall with rank: the top name about 1.5 %, the last about 0.05 %."""
    return [1 / (rank + 20) for rank in range(count)]


class _Maker:
    """Draws households, people and their altered copies from one random generator."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.female = list(dict.fromkeys(FEMALE))
        self.male = list(dict.fromkeys(MALE))
        self.surnames = list(dict.fromkeys(SURNAMES))
        self.weights = {id(names): _zipf_weights(len(names))
                        for names in (self.female, self.male, self.surnames)}

    def pick(self, names: list[str]) -> str:
        return self.rng.choices(names, self.weights[id(names)])[0]

    def postcode(self) -> str:
        rng = self.rng
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        return (f"{rng.choice(UK_AREAS)}{rng.randint(1, 29)} "
                f"{rng.randint(0, 9)}{rng.choice(letters)}{rng.choice(letters)}")

    def surname(self) -> str:
        name = self.pick(self.surnames)
        if self.rng.random() < DOUBLE_BARRELLED_SHARE:
            name = f"{name}-{self.pick(self.surnames)}"
        return name

    def household(self) -> list[dict]:
        """1-5 people sharing a surname and a postcode; children born within 20 years."""
        rng, surname, postcode = self.rng, self.surname(), self.postcode()
        size = rng.choices([1, 2, 3, 4, 5], [30, 33, 16, 14, 7])[0]
        adult_dob = date(1935, 1, 1) + timedelta(days=rng.randint(0, 365 * 60))
        people, used = [], set()
        for member in range(size):
            if member < 2:
                dob = adult_dob + timedelta(days=rng.randint(-2000, 2000))
            elif member > 2 and rng.random() < 0.1:
                dob = people[-1]["dob"]                    # twins: same surname, dob, postcode
            else:
                dob = adult_dob + timedelta(days=rng.randint(365 * 18, 365 * 40))
            sex = rng.choice("MF")
            first = self.pick(self.male if sex == "M" else self.female)
            if first in used or dob > LATEST_BIRTH:
                continue
            used.add(first)
            people.append({"first_name": first, "surname": surname, "dob": dob, "sex": sex,
                           "postcode": postcode})
        return people

    def copy_of(self, person: dict) -> dict:
        """A second record of `person`: one or two changes, as registries differ."""
        record = dict(person)
        for change in self.rng.sample(_CHANGES, self.rng.choice([1, 1, 2])):
            change(self, record)
        return record

    def typo(self, text: str) -> str:
        """One keying error: a letter dropped, doubled, replaced, or two letters swapped."""
        rng = self.rng
        if len(text) < 3:
            return text
        i = rng.randrange(1, len(text) - 1)
        kind = rng.choice(("drop", "double", "replace", "swap"))
        if kind == "drop":
            return text[:i] + text[i + 1:]
        if kind == "double":
            return text[:i] + text[i] + text[i:]
        if kind == "replace":
            return text[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + text[i + 1:]
        return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]


def _typo_first(maker, record):
    record["first_name"] = maker.typo(record["first_name"])


def _typo_surname(maker, record):
    record["surname"] = maker.typo(record["surname"])


def _nickname(maker, record):
    names = NICKNAMES.get(record["first_name"])
    record["first_name"] = maker.rng.choice(names) if names else maker.typo(record["first_name"])


def _swap_names(maker, record):
    record["first_name"], record["surname"] = record["surname"], record["first_name"]


def _day_month_swap(maker, record):
    dob = record["dob"]
    if dob and dob.day <= 12 and dob.day != dob.month:
        record["dob"] = date(dob.year, dob.day, dob.month)
    elif dob:
        _dob_digit(maker, record)


def _dob_digit(maker, record):
    """One digit of the ISO date keyed wrong, kept only if it is still a date."""
    if not record["dob"]:
        return
    text = record["dob"].isoformat()
    for _ in range(10):
        i = maker.rng.choice([2, 3, 6, 8, 9])
        changed = text[:i] + str(maker.rng.randint(0, 9)) + text[i + 1:]
        try:
            record["dob"] = date.fromisoformat(changed)
            return
        except ValueError:
            continue


def _no_dob(maker, record):
    record["dob"] = None


def _moved(maker, record):
    record["postcode"] = maker.postcode()


def _no_postcode(maker, record):
    record["postcode"] = ""


def _no_sex(maker, record):
    record["sex"] = ""


def _married(maker, record):
    if record["sex"] == "F":
        record["surname"] = maker.surname()
    else:
        _typo_surname(maker, record)


# Each change once in this list = equally likely; repeated = more likely.
_CHANGES = [_typo_first, _typo_first, _typo_surname, _typo_surname, _nickname, _swap_names,
            _day_month_swap, _dob_digit, _no_dob, _moved, _moved, _no_postcode, _no_sex,
            _married]


def _written(maker: _Maker, person: dict, key: str) -> dict:
    """The record as keyed in: styled names, varied case and date formats, spelled-out sex."""
    rng = maker.rng
    first, surname = (STYLED.get(person[f], person[f]) for f in ("first_name", "surname"))
    case = rng.choices([str.title, str.upper, str.lower], [85, 10, 5])[0]
    dob = person["dob"]
    if dob is None:
        dob_text = ""
    else:
        fmt = rng.choices(["%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d %b %Y", "%-d.%-m.%Y"],
                          [70, 15, 5, 5, 5])[0]
        dob_text = dob.strftime(fmt)
    sex = person["sex"]
    sex = rng.choices([sex, {"M": "male", "F": "female"}.get(sex, "")], [85, 15])[0]
    postcode = person["postcode"]
    postcode = rng.choices([postcode, postcode.replace(" ", "").lower()], [90, 10])[0]
    return {"id": key, "first_name": case(first) if first.islower() else first,
            "surname": case(surname) if surname.islower() else surname, "dob": dob_text,
            "sex": sex, "postcode": postcode, "site": f"site-{rng.randint(1, 12)}"}


def population(n: int, duplicate_rate: float = 0.2, seed: int = 1) -> tuple[list[dict], dict]:
    """`n` records as keyed in (id, first_name, surname, dob, sex, postcode, site) and the
    truth: record id -> person id. `duplicate_rate` of the records are extra copies of a
    person already present (a person may have several), in random order among the rest."""
    maker = _Maker(seed)
    copies = round(n * duplicate_rate)
    people: list[dict] = []
    while len(people) < n - copies:
        people.extend(maker.household())
    del people[n - copies:]
    originals = [(index, person) for index, person in enumerate(people)]
    extra = [(index, maker.copy_of(people[index]))
             for index in (maker.rng.randrange(len(people)) for _ in range(copies))]
    rows = originals + extra
    maker.rng.shuffle(rows)
    records, truth = [], {}
    for number, (person_id, person) in enumerate(rows, start=1):
        key = f"R{number:07d}"
        records.append(_written(maker, person, key))
        truth[key] = person_id
    return records, truth


def person_table(records: list[dict], first_id: int = 1):
    """The records as find_matches takes them: record_id first_id, first_id + 1... in order
    (int64), fields normalised as the load step stores them."""
    import pyarrow as pa

    from webapp.linkage.normalise import normalise_name, normalise_postcode, normalise_sex, parse_date

    dobs = (parse_date(record["dob"]) for record in records)
    return pa.table({
        "record_id": pa.array(range(first_id, first_id + len(records)), pa.int64()),
        "first_name": [normalise_name(record["first_name"]) for record in records],
        "surname": [normalise_name(record["surname"]) for record in records],
        "dob": [dob.isoformat() if dob else None for dob in dobs],
        "sex": [normalise_sex(record["sex"]) for record in records],
        "postcode": [normalise_postcode(record["postcode"]) for record in records],
    })


def true_pairs(records: list[dict], truth: dict, first_id: int = 1) -> set[tuple[int, int]]:
    """(record_id_l, record_id_r) of every two records of one person, numbered as person_table
    numbers them."""
    by_person: dict[int, list[int]] = {}
    for record_id, record in enumerate(records, start=first_id):
        by_person.setdefault(truth[record["id"]], []).append(record_id)
    return {pair for ids in by_person.values() for pair in combinations(ids, 2)}


MANIFEST_COLUMNS = {"id": "person_id", "first_name": "given", "surname": "family",
                    "dob": "birth_date", "sex": "sex", "postcode": "postcode"}


def write_envelope(path: str | Path, records: list[dict], files: int = 1) -> Path:
    """A zip at `path`: manifest.json (format firetime-envelope/1) and the records split
    over `files` CSV files (people.csv, or people-1.csv ... people-N.csv), UTF-8, comma
    separated, headed as MANIFEST_COLUMNS says; any other field (site) is an extra column."""
    path = Path(path)
    files = max(1, min(files, max(1, len(records))))
    names = ["people.csv"] if files == 1 else [f"people-{i}.csv" for i in range(1, files + 1)]
    extra = [field for field in (records[0] if records else {}) if field not in MANIFEST_COLUMNS]
    header = [MANIFEST_COLUMNS[field] for field in MANIFEST_COLUMNS] + extra
    manifest = {"format": "firetime-envelope/1",
                "files": [{"name": name, "delimiter": ",", "encoding": "utf-8",
                           "columns": dict(MANIFEST_COLUMNS)} for name in names]}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        for index, name in enumerate(names):
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            for record in records[index::files]:
                writer.writerow([record.get(field, "") for field in MANIFEST_COLUMNS]
                                + [record.get(field, "") for field in extra])
            archive.writestr(name, out.getvalue().encode("utf-8"))
    return path
