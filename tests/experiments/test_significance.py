"""Paired tests against scipy, Holm against its definition, alignment by user, seed statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from modalrec.errors import ModalRecError
from modalrec.experiments.significance import (
    align,
    compare_to_reference,
    holm,
    paired_t,
    seed_stats,
    wilcoxon,
)


def test_paired_tests_equal_scipy_on_known_inputs() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(200)
    b = a - 0.05 + rng.normal(0, 0.1, 200)
    t = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b)
    assert paired_t(a, b) == pytest.approx((t.statistic, t.pvalue))
    assert wilcoxon(a, b) == pytest.approx((w.statistic, w.pvalue))
    assert paired_t(a, b)[1] < 0.05  # a real difference of 0.05 over 200 users is detected
    # the classic textbook example: Wilcoxon (1945)-style small sample, exact p from scipy
    x = np.array([125, 115, 130, 140, 140, 115, 140, 125, 140, 135], float)
    y = np.array([110, 122, 125, 120, 140, 124, 123, 137, 135, 145], float)
    assert wilcoxon(x, y)[1] == pytest.approx(stats.wilcoxon(x, y, zero_method="wilcox").pvalue)


def test_degenerate_inputs_give_defined_p_values() -> None:
    a = np.array([0.0, 0.5, 1.0, 0.0])
    assert paired_t(a, a) == (0.0, 1.0)
    assert wilcoxon(a, a) == (0.0, 1.0)
    assert paired_t(a + 0.1, a)[1] == 0.0  # a constant shift: certain difference


def test_holm_matches_its_definition() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.random(5) ** 3
        m = len(q)
        brute = [min(1.0, max((m - r) * q[j] for r, j in enumerate(np.argsort(q)) if q[j] <= q[i])) for i in range(m)]
        assert holm(q) == pytest.approx(brute)
    out = holm([0.02, np.nan, 0.01])
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])


def test_align_pairs_users_and_refuses_different_users() -> None:
    users_a, users_b = np.array([3, 1, 2]), np.array([2, 3, 1])
    a, b = align(users_a, np.array([30.0, 10.0, 20.0]), users_b, np.array([2.0, 3.0, 1.0]))
    assert a.tolist() == [10, 20, 30] and b.tolist() == [1, 2, 3]
    with pytest.raises(ModalRecError, match="same users"):
        align(users_a, np.zeros(3), np.array([1, 2, 4]), np.zeros(3))


def test_compare_to_reference_corrects_over_the_family() -> None:
    rng = np.random.default_rng(2)
    best = rng.random(100)
    samples = {"best": best, "a": best - 0.01 + rng.normal(0, 0.05, 100), "b": best - 0.2, "c": best.copy()}
    tests = compare_to_reference(samples, "best")
    assert set(tests) == {"a", "b", "c"}
    raw = [stats.ttest_rel(samples[k], best).pvalue if k != "b" else 0.0 for k in ("a", "b")]
    assert tests["a"].t_p == pytest.approx(raw[0])
    assert [tests[k].t_p_holm for k in ("a", "b", "c")] == pytest.approx(holm([tests[k].t_p for k in ("a", "b", "c")]))
    assert tests["c"].t_p_holm == 1.0 and tests["c"].w_p_holm == 1.0
    assert tests["b"].mean_diff == pytest.approx(-0.2)


def test_seed_stats() -> None:
    assert seed_stats([0.2, 0.4]) == pytest.approx((0.3, np.std([0.2, 0.4], ddof=1)))
    assert seed_stats([0.5]) == (0.5, 0.0)
    for values in itertools.permutations([0.1, 0.2, 0.6]):
        assert seed_stats(values)[1] == pytest.approx(stats.tstd([0.1, 0.2, 0.6]))
