"""SOQL LIKE in the Salesforce imitation: the LIKE terms an OR joins on one field are matched as one compiled
test, and give exactly what evaluating them one by one gives."""
import random
import re

import pytest
from test_salesforce_contract import client, lead_ids

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.salesforce_soql import (
    Comparison,
    Logical,
    Negation,
    SoqlError,
    compile_condition,
    like_test,
    parse_soql,
    resolve,
)

# Subjects a client might have written, chosen to catch case folding, wildcards in the data, escapes, non-ASCII
# letters that fold oddly (long s, Kelvin sign, sharp s, dotted I), newlines, the empty string and no Subject.
SUBJECTS = ["Follow up [LPK000003]", "follow up [lpk000003]", "Recap [Lpk000150]", "[lpk000007]", "x[lpk000007]y",
            "Percent 100% done", "Percent 100x done", "under_score", "underXscore", "back\\slash", "it's done",
            "Straße", "STRASSE", "\u017ftatus report", "Status report", "Kelvin \u212a", "Kelvin k", "İstanbul",
            "istanbul", "Café", "CAFÉ", "line\nbreak", "", "%", "_", "email: by hand", None]

LPK_TERMS = " OR ".join(f"Subject LIKE '%[lpk{n:06d}]'" for n in range(200))
WHERES = [
    LPK_TERMS,
    LPK_TERMS.replace("'%[", "'%[%").replace("]'", "]%'"),
    "Subject LIKE 'email:%' OR Subject LIKE '%GmbH' OR Subject LIKE '%for%co%' OR Subject LIKE 'call with a_a%' "
    "OR Subject LIKE 'NOTE' OR Subject LIKE 'todo %'",
    "Subject LIKE '%100\\%%' OR Subject LIKE 'under\\_score' OR Subject LIKE 'back\\\\slash' "
    "OR Subject LIKE 'it\\'s%' OR Subject LIKE '\\%' OR Subject LIKE '\\_'",
    "Subject LIKE '%strasse%' OR Subject LIKE '%straße' OR Subject LIKE '\u017ftatus%' OR Subject LIKE 'STATUS%' "
    "OR Subject LIKE '%K' OR Subject LIKE 'kelvin _' OR Subject LIKE 'istanbul' OR Subject LIKE '%café'",
    "Subject LIKE 'line_break' OR Subject LIKE 'line%break' OR Subject LIKE '' OR Subject LIKE '_____'",
    "Subject LIKE '%' OR Subject LIKE 'nothing like it'",
    "Subject LIKE '%%%' OR Subject LIKE '%%a%%'",
    "Subject LIKE 'email:%' OR Subject LIKE '%co' OR Priority = 'High' OR Subject = 'Note' OR Subject LIKE '%k'",
    "Status = 'Completed' AND (Subject LIKE 'call%' OR Subject LIKE '%gmbh' OR Subject LIKE '%[lpk%')",
    "(Subject LIKE 'c%' OR Subject LIKE 'e%') AND (Subject LIKE '%s' OR Subject LIKE '%o' OR Subject LIKE '%n')",
    "Subject LIKE 'email%' AND Subject LIKE '%co' AND Subject LIKE '%for%'",
    "NOT (Subject LIKE 'note' OR Subject LIKE 'call%' OR Subject LIKE '%[lpk%')",
    "Subject LIKE 'call%' OR (Priority = 'High' AND Subject LIKE '%co') OR Subject IN ('Note', 'Straße') "
    "OR Subject != 'Note'",
    "Owner.Name LIKE 'a%' OR Owner.Name LIKE '%n' OR Subject LIKE '%[lpk000150]' OR Owner.Email LIKE '%.com'",
    "Subject LIKE '%[lpk000003]' OR Subject = null",
]


def like_reference(pattern: str, value) -> bool:
    """One LIKE term as the engine has always read it: the pattern with its escapes undone, ``%`` any run,
    ``_`` one character, case-insensitive, null never matching."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return value is not None and re.fullmatch(regex, value, re.I | re.S) is not None


def term_by_term(objects, sobject, node):
    """The WHERE tree evaluated one term at a time: each LIKE on its own, every other term as compiled alone."""
    if isinstance(node, Logical):
        parts = [term_by_term(objects, sobject, part) for part in node.parts]
        combine = all if node.op == "AND" else any
        return lambda row: combine(part(row) for part in parts)
    if isinstance(node, Negation):
        inner = term_by_term(objects, sobject, node.part)
        return lambda row: not inner(row)
    assert isinstance(node, Comparison)
    if node.op != "LIKE":
        return compile_condition(objects, sobject, node)
    accessor = resolve(objects, sobject, node.path)
    return lambda row: like_reference(node.value.value, accessor.get(row))


@pytest.fixture(scope="module")
def org():
    with Sandbox.start("salesforce", 150, 7, rate_limits=False) as sb:
        sf = client(sb)
        people = lead_ids(sb)
        for n, subject in enumerate(SUBJECTS):
            sf.Task.create({"WhoId": people[n % 5], **({} if subject is None else {"Subject": subject})})
        generated = sf.query("SELECT Id FROM Task WHERE Subject LIKE 'Call with%' LIMIT 2")["records"]
        sf.Task.update(generated[0]["Id"], {"Subject": "Edited [lpk000150]"})
        sf.Task.update(generated[1]["Id"], {"Subject": None})
        yield sb, sf


@pytest.mark.parametrize("where", WHERES)
def test_combined_like_terms_match_term_by_term_evaluation(org, where):
    sb, _ = org
    vendor = sb.vendor
    sobject = vendor.sobject("Task")
    soql = f"SELECT Id, Subject FROM Task WHERE {where}"
    reference = term_by_term(vendor.objects, sobject, parse_soql(soql, vendor.crm.clock_ms()).where)
    rows = list(vendor.candidates(sobject, None))
    expected = [row.key for row in rows if reference(row)]
    cursor, total = vendor.run(soql, True, 2000)
    assert list(cursor.keys) == expected and total == len(expected)
    assert expected  # every WHERE here matches something


def test_the_query_exercises_the_tricky_subjects(org):
    # Guards the comparison above against patterns that match nothing worth comparing.
    _, sf = org
    found = sf.query_all(f"SELECT Id, Subject FROM Task WHERE {LPK_TERMS}", include_deleted=True)["records"]
    assert sorted(r["Subject"] for r in found) == ["Edited [lpk000150]", "Follow up [LPK000003]",
                                                   "Recap [Lpk000150]", "[lpk000007]", "follow up [lpk000003]"]
    escapes = "Subject LIKE '%100\\%%' OR Subject LIKE 'under\\_score' OR Subject LIKE 'back\\\\slash'"
    found = sf.query_all(f"SELECT Subject FROM Task WHERE {escapes}")["records"]
    # The parser undoes a literal's backslash escapes before LIKE reads it, so an escaped % or _ is still a wildcard.
    assert sorted(r["Subject"] for r in found) == ["Percent 100% done", "Percent 100x done", "back\\slash",
                                                   "underXscore", "under_score"]
    unicode = "Subject LIKE '%strasse' OR Subject LIKE '\u017ftatus%' OR Subject LIKE 'kelvin k'"
    found = sf.query_all(f"SELECT Subject FROM Task WHERE {unicode}")["records"]
    assert sorted(r["Subject"] for r in found) == ["Kelvin k", "Kelvin \u212a", "STRASSE", "Status report",
                                                   "\u017ftatus report"]


def test_like_test_is_the_union_of_its_patterns():
    # Random patterns and values over an alphabet of wildcards, case pairs and odd case folds.
    rng = random.Random(5)
    alphabet = "aAbB%_\\[]sS\u017fkK\u212aßi\u0130\u0131\n."
    for _ in range(300):
        patterns = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(1, 8))]
        test = like_test(patterns)
        for _ in range(40):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            assert test(value) == any(like_reference(p, value) for p in patterns), (patterns, value)
        assert test(None) is False


def test_the_first_faulty_term_is_reported(org):
    sb, _ = org
    with pytest.raises(SoqlError, match="No such column 'Bogus1'") as failure:
        sb.vendor.run("SELECT Id FROM Task WHERE Subject LIKE 'a%' OR Bogus1 LIKE 'b' OR Bogus2 LIKE 'c'", True, 2000)
    assert failure.value.code == "INVALID_FIELD"
    with pytest.raises(SoqlError, match="invalid operator on field 'IsClosed'"):
        sb.vendor.run("SELECT Id FROM Task WHERE Subject LIKE 'a%' OR IsClosed LIKE 'b' OR Bogus LIKE 'c'", True, 2000)
    with pytest.raises(SoqlError, match="must be of type boolean"):
        sb.vendor.run("SELECT Id FROM Task WHERE Subject LIKE 'a%' OR IsClosed = 'x' OR Subject LIKE 5", True, 2000)
