"""The reports' shared helpers (pds/quality/report.py): the number format and the NFE at which
a method first reaches a target Frechet distance."""

import pytest

from pds.quality.report import nfe_to_target, number


def test_nfe_to_target_is_the_first_rung_at_or_below_it():
    rows = [{'method': 'a', 'nfe': 40, 'frechet_distance': 3.0},
            {'method': 'a', 'nfe': 80, 'frechet_distance': 0.5},
            {'method': 'a', 'nfe': 160, 'frechet_distance': 0.2},
            {'method': 'b', 'nfe': 40, 'frechet_distance': 2.0}]
    assert nfe_to_target(rows, 0.5, 'method', margin_se=0.0) == {'a': 80, 'b': None}


def test_a_sampled_cell_reaches_the_target_only_beyond_its_error_bar():
    rows = [{'sampler': 'a', 'nfe': 10, 'frechet_distance': 0.5, 'frechet_distance_se': 0.3},
            {'sampler': 'a', 'nfe': 20, 'frechet_distance': 0.5, 'frechet_distance_se': 0.2},
            {'sampler': 'b', 'nfe': 40, 'frechet_distance': 0.9, 'frechet_distance_se': 0.0},
            {'sampler': 'c', 'nfe': 5, 'frechet_distance': 2.0, 'frechet_distance_se': 0.0}]
    # 0.5 + 2 (0.3) > 1 at 10 NFE; 0.5 + 2 (0.2) <= 1 at 20
    assert nfe_to_target(rows, 1.0, 'sampler', margin_se=2.0) == {'a': 20, 'b': 40, 'c': None}
    # without the margin the first rung already counts
    assert nfe_to_target(rows, 1.0, 'sampler', margin_se=0.0)['a'] == 10


def test_the_smallest_nfe_wins_whatever_the_row_order():
    rows = [{'method': 'a', 'nfe': 12.5, 'frechet_distance': 0.1},
            {'method': 'a', 'nfe': 7.25, 'frechet_distance': 0.2}]  # an adaptive solver's mean
    assert nfe_to_target(rows, 0.3, 'method', margin_se=0.0) == {'a': 7.25}


@pytest.mark.parametrize('value,text', [(0.012345, '0.0123'), (3.14159, '3.14'),
                                        (99.94, '99.9'), (123.456, '123.5'),
                                        (-250.04, '-250.0'), (0.0, '0')])
def test_number_keeps_three_significant_digits_below_100_and_one_decimal_above(value, text):
    assert number(value) == text
