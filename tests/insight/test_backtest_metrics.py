"""The figures of a backtest against numbers worked out by hand on a dozen contacts at two moments."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from fractions import Fraction

import numpy as np
import pytest

from leadpulse.core.engine.insight.metrics import Category, ScoredContact, ScoredMoment, auc, backtest_figures

LADDER = ["cold", "warm", "hot"]
QUADRANTS = ["follow_up_now", "nurture", "qualify", "leave"]
JAN, APR = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)


def row(total, band, converted, fit, engagement, grade, quadrant, *, before=False):
    return ScoredContact(total, band, converted, before, {"fit": fit, "engagement": engagement}, grade, quadrant)


# At each moment one contact had converted already and is left out, so six count at each.
FIRST = ScoredMoment.from_contacts(JAN, [
    #   total band    conv.  fit eng grade quadrant
    row(2, "cold", False, 1, 1, "C", "leave"),  # a
    row(2, "cold", True, 2, 0, "C", "leave"),  # b
    row(5, "warm", False, 3, 2, "B", "nurture"),  # c
    row(5, "warm", True, 1, 4, "B", "qualify"),  # d
    row(5, "warm", False, 4, 1, "B", "nurture"),  # e
    row(9, "hot", True, 5, 4, "A", "follow_up_now"),  # f
    row(12, "hot", True, 6, 6, "A", "follow_up_now", before=True),  # g, converted before January
])
SECOND = ScoredMoment.from_contacts(APR, [
    row(1, "cold", False, 0, 1, "C", "leave"),  # h
    row(1, "cold", False, 1, 0, "C", "leave"),  # i
    row(4, "cold", True, 2, 2, "B", "qualify"),  # j
    row(6, "warm", False, 4, 2, "B", "nurture"),  # k
    row(10, "hot", True, 5, 5, "A", "follow_up_now"),  # l
    row(10, "hot", False, 6, 4, "A", "follow_up_now"),  # m
    row(3, "cold", False, 2, 0, "C", "leave", before=True),  # b again, converted in January's horizon
])


@pytest.fixture
def figures():
    return backtest_figures([FIRST, SECOND], LADDER, quadrants=QUADRANTS)


def exact(value):
    """Floats as the fractions they stand for (a rate of 0.333... reads as Fraction(1, 3)), inside tuples and lists."""
    if isinstance(value, float):
        return Fraction(value).limit_denominator(1000)
    if isinstance(value, tuple | list):
        return type(value)(exact(item) for item in value)
    return value


def band_table(moment):
    return [(b.name, b.contacts, b.contact_share, b.conversions, b.rate, b.conversion_share) for b in moment.bands]


def test_contacts_converted_before_the_moment_are_left_out(figures):
    first, second = figures.moments
    assert (first.contacts, first.left_out, first.conversions) == (6, 1, 3)
    assert (second.contacts, second.left_out, second.conversions) == (6, 1, 2)
    assert (figures.pooled.contacts, figures.pooled.left_out, figures.pooled.conversions) == (12, 2, 5)


def test_each_band_has_its_contacts_conversions_rate_and_shares_in_the_ladders_order(figures):
    first, second = figures.moments
    assert exact(band_table(first)) == [
        ("cold", 2, Fraction(2, 6), 1, Fraction(1, 2), Fraction(1, 3)),
        ("warm", 3, Fraction(3, 6), 1, Fraction(1, 3), Fraction(1, 3)),
        ("hot", 1, Fraction(1, 6), 1, 1.0, Fraction(1, 3)),
    ]
    assert exact(band_table(second)) == [
        ("cold", 3, Fraction(3, 6), 1, Fraction(1, 3), Fraction(1, 2)),
        ("warm", 1, Fraction(1, 6), 0, 0.0, 0.0),
        ("hot", 2, Fraction(2, 6), 1, Fraction(1, 2), Fraction(1, 2)),
    ]


def test_pooled_bands_count_each_contact_once_per_moment(figures):
    assert figures.pooled.at is None
    assert exact(band_table(figures.pooled)) == [
        ("cold", 5, Fraction(5, 12), 2, Fraction(2, 5), Fraction(2, 5)),
        ("warm", 4, Fraction(4, 12), 1, Fraction(1, 4), Fraction(1, 5)),
        ("hot", 3, Fraction(3, 12), 2, Fraction(2, 3), Fraction(2, 5)),
    ]


def test_lift_is_the_top_bands_rate_over_the_average_rate(figures):
    first, second = figures.moments
    assert exact((first.rate, first.lift)) == (Fraction(1, 2), 2)  # 1 / (3/6)
    assert exact((second.rate, second.lift)) == (Fraction(1, 3), Fraction(3, 2))  # (1/2) / (2/6)
    assert exact((figures.pooled.rate, figures.pooled.lift)) == (Fraction(5, 12), Fraction(8, 5))  # (2/3) / (5/12)


def test_auc_of_the_total_counts_a_tie_as_half(figures):
    # January, converted b=2 d=5 f=9 against a=2 c=5 e=5, 3 x 3 = 9 pairs:
    #   b ties a (1/2), is below c and e (0)      -> 1/2
    #   d is above a (1), ties c and e (1/2 + 1/2) -> 2
    #   f is above all three                       -> 3      U = 11/2, AUC = 11/18
    # April, converted j=4 l=10 against h=1 i=1 k=6 m=10, 2 x 4 = 8 pairs:
    #   j is above h and i (2), below k and m      -> 2
    #   l is above h, i, k (3), ties m (1/2)       -> 7/2    U = 11/2, AUC = 11/16
    # Pooled, 5 converted x 7 not = 35 pairs:
    #   b=2: above h i (2), ties a (1/2)                 -> 5/2
    #   d=5: above a h i (3), ties c e (1)               -> 4
    #   f=9: above a c e h i k (6), below m              -> 6
    #   j=4: above a h i (3)                             -> 3
    #   l=10: above a c e h i k (6), ties m (1/2)        -> 13/2   U = 22, AUC = 22/35
    first, second = figures.moments
    assert exact(first.auc) == Fraction(11, 18)
    assert exact(second.auc) == Fraction(11, 16)
    assert exact(figures.pooled.auc) == Fraction(22, 35)


def test_each_axis_has_its_own_auc(figures):
    # January's fit: b=2 d=1 f=5 against a=1 c=3 e=4: b above a (1), d ties a (1/2), f above all (3) -> 9/2 of 9
    # January's engagement: b=0 d=4 f=4 against a=1 c=2 e=1: b below all (0), d and f above all (3 + 3) -> 6 of 9
    first = figures.moments[0]
    assert exact(list(first.axis_auc.items())) == [("fit", Fraction(1, 2)), ("engagement", Fraction(2, 3))]


def test_quadrants_and_grades_have_contacts_conversions_and_rate(figures):
    first = figures.moments[0]
    assert exact([(q.name, q.contacts, q.conversions, q.rate) for q in first.quadrants]) == [
        ("follow_up_now", 1, 1, 1.0), ("nurture", 2, 0, 0.0), ("qualify", 1, 1, 1.0), ("leave", 2, 1, Fraction(1, 2)),
    ]
    # no grade ladder given: the grades met, in alphabetical order
    assert exact([(g.name, g.contacts, g.conversions, g.rate) for g in first.grades]) == [
        ("A", 1, 1, 1.0), ("B", 3, 1, Fraction(1, 3)), ("C", 2, 1, Fraction(1, 2)),
    ]


def test_calibration_gives_each_bands_rate_at_every_moment_with_mean_and_spread(figures):
    # cold 1/2 and 1/3: mean 5/12, population deviation |1/2 - 1/3| / 2 = 1/12
    # warm 1/3 and 0: mean 1/6, deviation 1/6; hot 1 and 1/2: mean 3/4, deviation 1/4
    table = [(c.band, c.moments, c.rates, c.mean_rate, c.std_rate, c.min_rate, c.max_rate)
             for c in figures.calibration]
    assert exact(table) == [
        ("cold", 2, (Fraction(1, 2), Fraction(1, 3)), Fraction(5, 12), Fraction(1, 12), Fraction(1, 3), Fraction(1, 2)),
        ("warm", 2, (Fraction(1, 3), 0), Fraction(1, 6), Fraction(1, 6), 0.0, Fraction(1, 3)),
        ("hot", 2, (1.0, Fraction(1, 2)), Fraction(3, 4), Fraction(1, 4), Fraction(1, 2), 1.0),
    ]


def test_a_band_without_contacts_has_no_rate_and_calibrates_over_the_other_moments():
    empty_top = ScoredMoment.from_contacts(APR, [row(1, "cold", False, 1, 0, "C", "leave"),
                                                 row(6, "warm", True, 4, 2, "B", "nurture")])
    figures = backtest_figures([FIRST, empty_top], LADDER)
    hot = figures.moments[1].bands[2]
    assert (hot.contacts, hot.contact_share, hot.conversions, hot.rate, hot.conversion_share) == (0, 0.0, 0, None, 0.0)
    assert figures.moments[1].lift is None
    assert "the top band 'hot' has no contacts: lift is undefined" in figures.moments[1].notes
    calibration = figures.calibration[2]
    assert (calibration.moments, calibration.rates, calibration.mean_rate, calibration.std_rate) == (1, (1.0, None), 1.0, 0.0)


def test_a_moment_without_conversions_has_no_auc_and_says_why():
    quiet = ScoredMoment.from_contacts(APR, [row(1, "cold", False, 1, 0, "C", "leave"),
                                             row(11, "hot", False, 6, 5, "A", "follow_up_now")])
    moment = backtest_figures([quiet], LADDER).moments[0]
    assert (moment.auc, moment.axis_auc, moment.lift, moment.rate) == (None, {"fit": None, "engagement": None}, None, 0.0)
    assert [b.conversion_share for b in moment.bands] == [None, None, None]
    assert moment.notes == ("no contact converted within the horizon: AUC and lift are undefined",)


def test_a_moment_where_everyone_converted_has_no_auc():
    busy = ScoredMoment.from_contacts(APR, [row(1, "cold", True, 1, 0, None, None),
                                            row(11, "hot", True, 6, 5, None, None)])
    moment = backtest_figures([busy], LADDER).moments[0]
    assert (moment.auc, moment.lift) == (None, 1.0)
    assert moment.notes == ("every contact converted within the horizon: AUC is undefined",)


def test_a_moment_whose_contacts_all_converted_before_it_has_no_figures():
    done = ScoredMoment.from_contacts(APR, [row(4, "cold", True, 1, 0, "C", "leave", before=True)])
    moment = backtest_figures([done], LADDER).moments[0]
    assert (moment.contacts, moment.left_out, moment.rate, moment.lift, moment.auc) == (0, 1, None, None, None)
    assert [b.contact_share for b in moment.bands] == [None, None, None]
    assert "there is no rate, lift or AUC" in moment.notes[0]


def test_listed_quadrants_come_first_then_others_met_and_a_contact_without_one_is_in_none():
    moment = ScoredMoment.from_contacts(JAN, [row(1, "cold", False, 1, 0, None, "zeta"),
                                              row(2, "cold", True, 1, 0, None, None),
                                              row(3, "warm", False, 1, 0, None, "alpha")])
    figures = backtest_figures([moment], LADDER, quadrants=["leave"])
    assert [(q.name, q.contacts) for q in figures.moments[0].quadrants] == [("leave", 0), ("alpha", 1), ("zeta", 1)]
    assert figures.moments[0].grades == ()


def test_columns_give_the_same_figures_as_rows():
    columns = ScoredMoment(
        JAN, total=[2, 2, 5, 5, 5, 9, 12], band=Category.of(["cold", "cold", "warm", "warm", "warm", "hot", "hot"]),
        converted=[False, True, False, True, False, True, True],
        converted_before=[False, False, False, False, False, False, True],
        axes={"fit": [1, 2, 3, 1, 4, 5, 6], "engagement": [1, 0, 2, 4, 1, 4, 6]},
        grade=["C", "C", "B", "B", "B", "A", "A"],
        quadrant=["leave", "leave", "nurture", "qualify", "nurture", "follow_up_now", "follow_up_now"],
    )
    by_columns = backtest_figures([columns], LADDER, quadrants=QUADRANTS)
    by_rows = backtest_figures([FIRST], LADDER, quadrants=QUADRANTS)
    assert by_columns == by_rows


def test_the_figures_serialise_to_json(figures):
    data = json.loads(figures.to_json())
    assert data == figures.as_dict()
    assert data["moments"][0]["at"] == "2025-01-01T00:00:00+00:00" and data["pooled"]["at"] is None
    assert data["moments"][0]["bands"][2] == {"name": "hot", "contacts": 1, "contact_share": 1 / 6, "conversions": 1,
                                              "rate": 1.0, "conversion_share": 1 / 3}
    assert json.loads(json.dumps(asdict(figures), default=str))["calibration"][0]["band"] == "cold"


def test_auc_matches_counting_every_pair_on_many_ties():
    generator = np.random.default_rng(17)
    scores = generator.integers(0, 8, 400).astype(float)  # 8 values over 400 contacts: ties everywhere
    converted = generator.random(400) < 0.3
    above = (scores[converted][:, None] > scores[~converted][None, :]).sum()
    tied = (scores[converted][:, None] == scores[~converted][None, :]).sum()
    assert auc(scores, converted) == (above + tied / 2) / (converted.sum() * (~converted).sum())


def test_auc_of_scores_that_are_all_equal_is_one_half():
    assert auc([3.0, 3.0, 3.0], [True, False, False]) == 0.5


def test_a_band_off_the_ladder_is_refused_naming_it():
    stray = ScoredMoment.from_contacts(JAN, [row(1, "lukewarm", False, 1, 0, "C", "leave")])
    with pytest.raises(ValueError, match=r"moment 2025-01-01T00:00:00\+00:00: contacts in the bands \['lukewarm'\]"):
        backtest_figures([stray], LADDER)


def test_columns_of_unequal_length_are_refused():
    with pytest.raises(ValueError, match="every column needs one value per contact"):
        ScoredMoment(JAN, total=[1, 2], band=Category.of(["cold"]), converted=[True, False], converted_before=[False, False])


def test_a_score_that_is_not_a_number_is_refused_naming_its_row():
    with pytest.raises(ValueError, match="total of row 1 is nan, expected a finite number"):
        ScoredMoment(JAN, total=[1, float("nan")], band=Category.of(["cold", "cold"]), converted=[True, False],
                     converted_before=[False, False])


def test_moments_with_different_axes_are_refused():
    single = ScoredMoment(APR, total=[1], band=Category.of(["cold"]), converted=[True], converted_before=[False])
    with pytest.raises(ValueError, match=r"expected the axes \['engagement', 'fit'\]"):
        backtest_figures([FIRST, single], LADDER)
