"""The filter language and flags, on real classified records (no services needed)."""
from __future__ import annotations

import pytest

from stream.subscribe.filters import FilterError, combine, flag_predicate, parse_where
from tests.stream.subscribe.helpers import classified_records


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return classified_records()


def _keep(predicate, records):
    return [r for r in records if predicate(r)]


def test_where_matches_a_hand_written_filter(records):
    kept = _keep(parse_where("real_bogus > 0.8 and survey == 'ztf'"), records)
    expected = [r for r in records if r["real_bogus"] > 0.8 and r["survey"] == "ztf"]
    assert kept == expected and 0 < len(kept) < len(records)


def test_maps_lists_chains_and_not(records):
    assert _keep(parse_where("class_scores['morphology.galaxy'] >= 0.7"), records) == [
        r for r in records if r["class_scores"]["morphology.galaxy"] >= 0.7]
    assert _keep(parse_where("0.2 < real_bogus <= 0.5"), records) == [r for r in records if 0.2 < r["real_bogus"] <= 0.5]
    assert _keep(parse_where("band in ('g', 'r') and not survey == 'rubin'"), records) == [
        r for r in records if r["band"] in ("g", "r") and r["survey"] != "rubin"]
    assert _keep(parse_where("'morphology' in models and untrained == true"), records) == records
    assert _keep(parse_where("survey_scores['drb'] > 0.9 or survey_scores['reliability'] > 0.9"), records) == [
        r for r in records if r["survey_scores"].get("drb", 0) > 0.9 or r["survey_scores"].get("reliability", 0) > 0.9]
    assert _keep(parse_where("-real_bogus < -0.99"), records) == [r for r in records if r["real_bogus"] > 0.99]


def test_missing_values_compare_false_not_error(records):
    record = dict(records[0], real_bogus=None)
    assert parse_where("real_bogus > 0.5")(record) is False
    assert parse_where("real_bogus == null")(record) is True
    assert parse_where("class_scores['no-such-label'] > 0")(record) is False
    assert parse_where("survey > 3")(record) is False  # string vs number: no match


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",     # calls
    "survey.__class__",                     # attributes
    "(lambda: 1)()",
    "[x for x in models]",
    "real_bogus + 1 > 2",                   # arithmetic is not part of the language
    "secret_field > 1",                     # unknown field
    "class_scores > 1",                     # a map needs an index
    "class_scores[0] > 1",
    "real_bogus >",                         # syntax
    "",
])
def test_anything_outside_the_language_is_refused(text):
    with pytest.raises(FilterError):
        parse_where(text)


def test_flags(records):
    assert _keep(flag_predicate(min_rb=0.8), records) == [r for r in records if r["real_bogus"] >= 0.8]
    assert _keep(flag_predicate(class_label="morphology.star", min_prob=0.7), records) == [
        r for r in records if r["class_scores"]["morphology.star"] >= 0.7]
    top_galaxy = _keep(flag_predicate(class_label="morphology.galaxy"), records)
    assert top_galaxy and all(max(r["class_scores"], key=r["class_scores"].get) == "morphology.galaxy" for r in top_galaxy)
    assert _keep(flag_predicate(survey="RUBIN"), records) == [r for r in records if r["survey"] == "rubin"]
    assert _keep(flag_predicate(model="realbogus"), records) == records
    assert _keep(flag_predicate(model="nope"), records) == []
    assert _keep(flag_predicate(untrained=False), records) == []
    assert flag_predicate() is None
    both = combine([flag_predicate(survey="ztf"), parse_where("real_bogus < 0.3")])
    assert _keep(both, records) == [r for r in records if r["survey"] == "ztf" and r["real_bogus"] < 0.3]


def test_where_on_the_quality_block(records):
    """The survey's own flags (v1.3 quality block), by name: Fink's ZTF rule, Rubin's flags, asteroids."""
    good = _keep(parse_where("quality.good and not quality.known_solar_system"), records)
    assert good == [r for r in records if r["quality"]["good"] and not r["quality"]["known_solar_system"]]
    assert 0 < len(good) < len(records)
    ztf_good = _keep(parse_where("survey == 'ztf' and quality['good'] == true"), records)
    assert ztf_good and all(r["quality"]["nbad"] == 0 and abs(r["quality"]["magdiff"]) <= 0.1 for r in ztf_good)
    asteroids = _keep(parse_where("quality.known_solar_system and quality.solar_system_distance_arcsec <= 5"), records)
    assert asteroids and all(r["survey"] == "ztf" for r in asteroids)
    rubin_clean = _keep(parse_where("survey == 'rubin' and quality.reliability >= 0.5 and not quality.dipole"), records)
    assert rubin_clean == [r for r in records if r["survey"] == "rubin" and (r["quality"]["reliability"] or 0) >= 0.5
                           and not r["quality"]["dipole"]]
    with pytest.raises(FilterError, match="unknown quality flag 'godo'"):
        parse_where("quality.godo")
    assert parse_where("quality.good")(dict(records[0], quality=None)) is False   # a record before v1.3


def test_class_flag_compares_within_one_model_only():
    """ACAI's sigmoid 0.9 never outranks alertclass's softmax: --class picks each model's own top."""
    record = {"class_scores": {"acai.variable": 0.9, "acai.hosted": 0.2, "alertclass.star": 0.6, "alertclass.bogus": 0.4}}
    assert flag_predicate(class_label="alertclass.star")(record) is True
    assert flag_predicate(class_label="acai.variable")(record) is True
    assert flag_predicate(class_label="acai.hosted")(record) is False
