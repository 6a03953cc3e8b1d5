"""Significance of differences between models: paired tests over users, Holm correction, seed statistics.

Two models evaluated on the same split score the same users, so their per-user metrics are paired
samples. Each model is compared with the best one (by mean) with a paired t-test and a Wilcoxon
signed-rank test (scipy); the m - 1 p-values of one metric form a family corrected with Holm's
step-down method, which controls the family-wise error rate without assuming independence.

With several seeds, a model's per-user metric is first averaged over its seeds (the same users in
every seed), so the tests are over users of seed-averaged scores; the spread over seeds is reported
separately as mean and sample std of the seeds' summary values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from modalrec.errors import ModalRecError


@dataclass
class PairedTest:
    """One model against the reference (the best) on one metric, over the users both scored."""

    n_users: int
    mean_diff: float  # mean of (model - reference)
    t_stat: float
    t_p: float
    w_stat: float
    w_p: float
    t_p_holm: float = float("nan")
    w_p_holm: float = float("nan")


def align(users_a: np.ndarray, values_a: np.ndarray, users_b: np.ndarray, values_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two per-user arrays in one user order; the runs must have scored the same users."""
    users_a, users_b = np.asarray(users_a), np.asarray(users_b)
    if len(users_a) != len(users_b) or not np.array_equal(np.sort(users_a), np.sort(users_b)):
        raise ModalRecError(
            f"paired tests need runs scored on the same users ({len(users_a)} vs {len(users_b)} users, "
            "or different ids): compare runs of the same dataset, preprocessing and split"
        )
    order_a, order_b = np.argsort(users_a, kind="stable"), np.argsort(users_b, kind="stable")
    return np.asarray(values_a, dtype=np.float64)[order_a], np.asarray(values_b, dtype=np.float64)[order_b]


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired t-test of a vs b (two-sided). Identical differences (zero variance, up to rounding): p = 1 if
    they are all 0, else 0 (scipy would return NaN or a rounding artefact)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(diff) < 2 or np.allclose(diff, diff[0], rtol=0.0, atol=1e-12):
        constant = float(diff[0]) if len(diff) else 0.0
        return (0.0, 1.0) if abs(constant) <= 1e-12 else (float(np.sign(constant) * np.inf), 0.0)
    result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)


def wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank test of a vs b (two-sided; zero differences dropped, as Wilcoxon defined it).
    All differences zero: no evidence of a difference, p = 1."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not np.any(diff != 0):
        return 0.0, 1.0
    result = stats.wilcoxon(a, b, zero_method="wilcox")
    return float(result.statistic), float(result.pvalue)


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given; NaN entries stay NaN and are not counted).

    Sorted ascending, p_(i) (i = 1..m) becomes max_{j<=i} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def paired_test(values: np.ndarray, reference: np.ndarray) -> PairedTest:
    """Paired t-test and Wilcoxon test of ``values`` against ``reference`` (aligned per-user arrays), uncorrected."""
    t_stat, t_p = paired_t(values, reference)
    w_stat, w_p = wilcoxon(values, reference)
    mean_diff = float(np.mean(values - reference)) if len(values) else 0.0
    return PairedTest(len(values), mean_diff, t_stat, t_p, w_stat, w_p)


def correct_family(tests: dict[str, PairedTest]) -> dict[str, PairedTest]:
    """Fill each test's Holm-corrected p-values, the tests forming one family; returns ``tests``."""
    labels = list(tests)
    for attr in ("t_p", "w_p"):
        for label, adjusted in zip(labels, holm([getattr(tests[lab], attr) for lab in labels])):
            setattr(tests[label], f"{attr}_holm", float(adjusted))
    return tests


def compare_to_reference(samples: dict[str, np.ndarray], reference: str) -> dict[str, PairedTest]:
    """Paired tests of every other entry against ``reference`` (aligned per-user arrays), Holm-corrected
    over the family of comparisons."""
    ref = samples[reference]
    return correct_family({label: paired_test(values, ref) for label, values in samples.items() if label != reference})


def seed_stats(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; std is 0 for a single seed."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
