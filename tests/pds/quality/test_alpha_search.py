"""The alpha search of --mode=tune (pds/quality/alpha_search.py): the golden-section search
and the power-law fit of alpha*(N)."""

import math

import pytest

from pds.quality.alpha_search import golden_section, power_law_fit


def test_golden_section_finds_the_minimum_of_a_unimodal_function():
    seen = []

    def f(a):
        seen.append(a)
        return (math.log(a) - math.log(7.0)) ** 2

    golden_section(f, 2.0, 20.0, 12)
    assert len(seen) == 12
    # the bracket shrinks by the golden ratio per evaluation after the first two
    width = math.log(10.0) * ((math.sqrt(5) - 1) / 2) ** 11
    best = min(seen, key=lambda a: abs(math.log(a / 7.0)))
    assert abs(math.log(best / 7.0)) <= width


def test_power_law_fit_recovers_an_exact_power_law():
    table = [{'iterations': n, 'alpha': 0.3 * n**0.8} for n in (20, 40, 100, 200)]
    table.append({'iterations': 1000, 'alpha': None})  # baseline-best: left out
    fit = power_law_fit(table)
    assert fit['exponent'] == pytest.approx(0.8, rel=1e-9)
    assert fit['coefficient'] == pytest.approx(0.3, rel=1e-9)
    assert fit['points'] == 4
    assert power_law_fit(table[:1]) is None
