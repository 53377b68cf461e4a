"""Cohort statistics over tidy tables (docs/evaluation.md §5; Dewey et al., AJNR 2024, statistics section).

Every function is pure: it takes arrays or a :class:`pandas.DataFrame` and returns a small frozen dataclass (or a
frame) whose fields are plain floats, so results turn into tidy rows with :func:`dataclasses.asdict`. Rows with a
missing value in any column a call uses are dropped for that call and the ``n`` actually used is reported.

Conventions:

* ``x``/``y`` columns of a frame hold one value per subject (one row per subject); tidy image results
  (``subject, setting, method, metric, value``) become such frames with :func:`pivot_methods`.
* Sex is numeric (0/1, 1 = male, the "Sex (M)" term of Dewey et al.); see :mod:`mrisr.eval.clinical` for loading.
* Two-sided tests throughout; ``confidence`` is the two-sided coverage of confidence intervals.

Formulas (n = subjects used, k = number of covariates):

* Pearson r = cov(x, y)/(s_x·s_y); t = r·√((n − 2 − k)/(1 − r²)), df = n − 2 − k (k = 0 for a plain correlation).
* Fisher interval: z = atanh r, SE = 1/√(n − k − 3), CI = tanh(z ± z_{1−α/2}·SE) (Fisher 1921).
* Williams' test for two dependent correlations sharing variable j (Williams 1959, in the form of Steiger 1980,
  eq. 14, as implemented by the R package ``cocor``): see :func:`williams_test`.
* Partial correlation: residualise x and y on Z = [1, covariates] by least squares and correlate the residuals.
* Identity-line test, Bland–Altman limits of agreement (Bland & Altman 1986), the additive T1w → T2w correction and
  the linear mixed-effects atrophy model (Laird & Ware 1982; statsmodels ``MixedLM``) as documented per function.
* OLS line with the pointwise confidence band of its mean response (the fit drawn in scatter plots):
  :func:`ols_fit_band`.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = [
    "BlandAltman",
    "BootstrapSummary",
    "Correlation",
    "DependentCorrelations",
    "FitBand",
    "IdentityLine",
    "MixedModelFit",
    "PairedTTest",
    "Slope",
    "T1wCorrection",
    "WilliamsTest",
    "add_time_since_first_scan",
    "atrophy_formula",
    "bland_altman",
    "bootstrap_subsamples",
    "dependent_correlation_test",
    "fisher_ci",
    "fit_mixed_model",
    "identity_line_test",
    "ols_fit_band",
    "paired_ttest",
    "partial_correlation",
    "pearson_correlation",
    "pivot_methods",
    "random_resolution_cohort",
    "regression_slope",
    "t1w_to_t2w_correction",
    "williams_test",
]

log = logging.getLogger(__name__)

CorrelationMethod = Literal["pearson", "spearman"]
OutcomeTransform = Literal["none", "log", "inverse"]

_R_LIMIT = 1.0 - 1e-15


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def _paired_arrays(x: Iterable[float], y: Iterable[float], minimum: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays of equal length with pairs holding a NaN dropped; at least ``minimum`` pairs."""
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{what}: the two samples differ in length ({a.size} vs {b.size})")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < minimum:
        raise ValueError(f"{what}: needs at least {minimum} complete pairs, got {a.size}")
    return a, b


def _numeric_matrix(data: pd.DataFrame, columns: Sequence[str], minimum: int, what: str) -> np.ndarray:
    """The ``columns`` of ``data`` as a float matrix (n, len(columns)), rows with a missing value dropped.

    Raises:
        ValueError: missing or non-numeric columns (named), or fewer than ``minimum`` complete rows.
    """
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; available: {list(data.columns)}")
    bad = [c for c in columns if not (pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c]))]
    if bad:
        raise ValueError(f"{what}: column(s) {bad} are not numeric (encode sex as 0/1, parse numbers first)")
    values = np.column_stack([data[c].to_numpy(dtype=float, na_value=np.nan) for c in columns])
    values = values[np.isfinite(values).all(axis=1)]
    if len(values) < minimum:
        raise ValueError(f"{what}: needs at least {minimum} complete rows of {list(columns)}, got {len(values)}")
    return values


# ---------------------------------------------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    """A (partial) correlation with its t test and Fisher interval.

    Attributes:
        r: correlation coefficient.
        t: t statistic r·√(df/(1 − r²)).
        df: degrees of freedom n − 2 − n_covariates.
        p: two-sided p-value of t with ``df`` degrees of freedom.
        ci_low: lower Fisher confidence limit.
        ci_high: upper Fisher confidence limit.
        n: number of complete observations used.
        n_covariates: number of covariates partialled out (0 for a plain correlation).
        method: ``pearson`` or ``spearman`` (Pearson on ranks).
    """

    r: float
    t: float
    df: int
    p: float
    ci_low: float
    ci_high: float
    n: int
    n_covariates: int = 0
    method: str = "pearson"


def fisher_ci(r: float, n: int, n_covariates: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Fisher-z confidence interval of a (partial) correlation.

    z = atanh r, SE = 1/√(n − k − 3), CI = tanh(z ± z_{1−α/2}·SE) with k = ``n_covariates``.

    Args:
        r: correlation in [−1, 1].
        n: number of observations.
        n_covariates: covariates partialled out (k).
        confidence: two-sided coverage (0.95 → z = 1.95996).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when n − k − 3 ≤ 0.
    """
    dof = n - n_covariates - 3
    if dof <= 0 or not np.isfinite(r):
        return (math.nan, math.nan)
    z = math.atanh(float(np.clip(r, -_R_LIMIT, _R_LIMIT)))
    half = _z(confidence) / math.sqrt(dof)
    return (math.tanh(z - half), math.tanh(z + half))


def _correlation_result(r: float, n: int, k: int, confidence: float, method: str) -> Correlation:
    r = float(np.clip(r, -1.0, 1.0))
    dof = n - 2 - k
    if dof <= 0:
        raise ValueError(f"correlation: n = {n} with {k} covariate(s) leaves no degrees of freedom")
    if abs(r) >= _R_LIMIT:
        t, p = math.copysign(math.inf, r), 0.0
    else:
        t = r * math.sqrt(dof / (1.0 - r * r))
        p = float(2.0 * sps.t.sf(abs(t), dof))
    low, high = fisher_ci(r, n, k, confidence)
    return Correlation(r=r, t=t, df=dof, p=p, ci_low=low, ci_high=high, n=n, n_covariates=k, method=method)


def _corr(a: np.ndarray, b: np.ndarray, what: str) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0 or not np.isfinite(denom):
        raise ValueError(f"{what}: a variable is constant, the correlation is undefined")
    return float(a @ b) / denom


def pearson_correlation(
    x: Iterable[float], y: Iterable[float], confidence: float = 0.95, method: CorrelationMethod = "pearson"
) -> Correlation:
    """Pearson (or Spearman) correlation with its t test (df = n − 2) and Fisher confidence interval.

    r = cov(x, y)/(s_x·s_y); t = r·√((n − 2)/(1 − r²)); Spearman's ρ is Pearson's r of the ranks (average ranks for
    ties; its t test and Fisher interval are then approximations). Pairs with a NaN are dropped.

    Args:
        x: first variable, shape (n,).
        y: second variable, shape (n,).
        confidence: coverage of the Fisher interval.
        method: ``pearson`` or ``spearman``.

    Returns:
        The :class:`Correlation` (``n_covariates = 0``).

    Raises:
        ValueError: fewer than 3 complete pairs, different lengths or a constant variable.
    """
    a, b = _paired_arrays(x, y, 3, "correlation")
    if method == "spearman":
        a, b = sps.rankdata(a), sps.rankdata(b)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    return _correlation_result(_corr(a, b, "correlation"), a.size, 0, confidence, method)


def _residualize(values: np.ndarray, design: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef


def partial_correlation(
    data: pd.DataFrame,
    x: str,
    y: str,
    covariates: Sequence[str] = ("age", "sex"),
    confidence: float = 0.95,
    method: CorrelationMethod = "pearson",
) -> Correlation:
    """Partial correlation of ``x`` and ``y`` adjusted for ``covariates`` (residual method).

    x and y are each residualised on Z = [1, covariates] by ordinary least squares and the residuals correlated.
    With k covariates: t = r·√((n − 2 − k)/(1 − r²)), df = n − 2 − k; Fisher SE = 1/√(n − k − 3). With
    ``method="spearman"`` every column (covariates included) is replaced by its ranks first. Rows with a missing
    value in any of the columns are dropped; the ``n`` used is reported.

    Args:
        data: one row per subject.
        x: column of the first variable (e.g. ``HR`` MUCCA).
        y: column of the second variable (e.g. ``edss``).
        covariates: numeric covariate columns (empty → plain correlation).
        confidence: coverage of the Fisher interval.
        method: ``pearson`` or ``spearman``.

    Returns:
        The :class:`Correlation` with ``n_covariates = len(covariates)``.

    Raises:
        ValueError: a column is missing or non-numeric, too few complete rows, or a constant residual.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    k = len(covariates)
    values = _numeric_matrix(data, [x, y, *covariates], k + 3, "partial correlation")
    return _partial_from_matrix(values, confidence, method)


def _partial_from_matrix(values: np.ndarray, confidence: float, method: str) -> Correlation:
    """Partial correlation of columns 0 and 1 of ``values`` given the remaining columns."""
    if method == "spearman":
        values = np.column_stack([sps.rankdata(col) for col in values.T])
    design = np.column_stack([np.ones(len(values)), values[:, 2:]])
    rx = _residualize(values[:, 0], design)
    ry = _residualize(values[:, 1], design)
    k = values.shape[1] - 2
    return _correlation_result(_corr(rx, ry, "partial correlation"), len(values), k, confidence, method)


@dataclass(frozen=True)
class WilliamsTest:
    """Williams' t test of H0: ρ_jk = ρ_jh for two correlations sharing variable j.

    Attributes:
        t: test statistic (negative when r_jk < r_jh).
        df: degrees of freedom n_eff − 3.
        p: two-sided p-value.
        n: number of subjects.
        n_eff: effective sample size n − k_cov used in the formula.
        r12: r_jk.
        r13: r_jh.
        r23: r_kh.
    """

    t: float
    df: int
    p: float
    n: int
    n_eff: int
    r12: float
    r13: float
    r23: float


def williams_test(r12: float, r13: float, r23: float, n: int, n_covariates: int = 0) -> WilliamsTest:
    """Williams' test between two dependent correlations that share one variable (j = variable 1).

    Williams (1959) in the form given by Steiger (1980, eq. 14), as implemented by the R package ``cocor``
    (``williams1959``), with r_jk = ``r12``, r_jh = ``r13``, r_kh = ``r23``:

        |R| = 1 − r_jk² − r_jh² − r_kh² + 2·r_jk·r_jh·r_kh,   r̄ = (r_jk + r_jh)/2,
        t = (r_jk − r_jh)·√( (n − 1)(1 + r_kh) / ( 2·((n − 1)/(n − 3))·|R| + r̄²·(1 − r_kh)³ ) ),

    df = n − 3, p = 2·P(T > |t|). For partial correlations adjusted for k covariates, n is replaced by
    n_eff = n − k everywhere (docs/evaluation.md §5).

    Reference values (``cocor``): (0.30, 0.40, 0.50, n = 100) → t = −1.0767, p = 0.2843;
    (0.5447, 0.8, 0.0729, n = 70) → t = −2.811, df = 67, p = 0.0065.

    Args:
        r12: correlation of the shared variable j with k (e.g. outcome vs HR MUCCA).
        r13: correlation of the shared variable j with h (e.g. outcome vs LR MUCCA).
        r23: correlation of k with h (e.g. HR vs LR MUCCA).
        n: number of subjects.
        n_covariates: covariates partialled out of all three correlations.

    Returns:
        The :class:`WilliamsTest`.

    Raises:
        ValueError: a correlation outside [−1, 1], n_eff ≤ 3, or a singular correlation matrix (|R| ≤ 0).
    """
    rs = (float(r12), float(r13), float(r23))
    if not all(-1.0 <= r <= 1.0 for r in rs):
        raise ValueError(f"williams_test: correlations must lie in [-1, 1], got {rs}")
    n_eff = int(n) - int(n_covariates)
    if n_eff <= 3:
        raise ValueError(f"williams_test: needs n - n_covariates > 3, got n = {n}, n_covariates = {n_covariates}")
    r_jk, r_jh, r_kh = rs
    det = 1.0 - r_jk**2 - r_jh**2 - r_kh**2 + 2.0 * r_jk * r_jh * r_kh
    if det <= 0.0:
        raise ValueError(f"williams_test: the correlation matrix of {rs} is not positive definite (|R| = {det:.3g})")
    r_bar = (r_jk + r_jh) / 2.0
    denom = 2.0 * ((n_eff - 1.0) / (n_eff - 3.0)) * det + r_bar**2 * (1.0 - r_kh) ** 3
    t = (r_jk - r_jh) * math.sqrt((n_eff - 1.0) * (1.0 + r_kh) / denom)
    dof = n_eff - 3
    p = float(2.0 * sps.t.sf(abs(t), dof))
    return WilliamsTest(t=t, df=dof, p=p, n=int(n), n_eff=n_eff, r12=r_jk, r13=r_jh, r23=r_kh)


@dataclass(frozen=True)
class DependentCorrelations:
    """Correlations of a shared variable with a reference and a candidate measurement, and their Williams test.

    Attributes:
        reference: correlation of the shared variable with the reference (r_jk).
        candidate: correlation of the shared variable with the candidate (r_jh).
        between: correlation of reference and candidate (r_kh).
        williams: Williams' test of reference vs candidate.
    """

    reference: Correlation
    candidate: Correlation
    between: Correlation
    williams: WilliamsTest


def dependent_correlation_test(
    data: pd.DataFrame,
    shared: str,
    reference: str,
    candidate: str,
    covariates: Sequence[str] = ("age", "sex"),
    method: CorrelationMethod = "pearson",
    confidence: float = 0.95,
) -> DependentCorrelations:
    """Is ``shared`` correlated as strongly with ``candidate`` as with ``reference``? (Williams' test).

    Dewey et al. use j = clinical outcome, k = HR MUCCA, h = LR (or SR) MUCCA. All three (partial) correlations are
    computed on the same complete rows; with covariates, Williams' test uses n_eff = n − k.

    Args:
        data: one row per subject.
        shared: the shared variable j (e.g. ``edss``).
        reference: the reference measurement k (e.g. ``HR``).
        candidate: the candidate measurement h (e.g. ``LR``).
        covariates: covariates partialled out of all three correlations.
        method: ``pearson`` or ``spearman``.
        confidence: coverage of the Fisher intervals.

    Returns:
        The :class:`DependentCorrelations`.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    k = len(covariates)
    values = _numeric_matrix(data, [shared, reference, candidate, *covariates], k + 4, "williams")
    cov = values[:, 3:]
    r_jk = _partial_from_matrix(np.column_stack([values[:, [0, 1]], cov]), confidence, method)
    r_jh = _partial_from_matrix(np.column_stack([values[:, [0, 2]], cov]), confidence, method)
    r_kh = _partial_from_matrix(np.column_stack([values[:, [1, 2]], cov]), confidence, method)
    test = williams_test(r_jk.r, r_jh.r, r_kh.r, len(values), n_covariates=k)
    return DependentCorrelations(reference=r_jk, candidate=r_jh, between=r_kh, williams=test)


# ---------------------------------------------------------------------------------------------------------------
# Tests of differences and agreement
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedTTest:
    """Paired t test of a − b.

    Attributes:
        mean_diff: mean of d = a − b.
        sd_diff: SD of d (ddof 1).
        t: mean(d)/(s_d/√n).
        df: n − 1.
        p: two-sided p-value.
        ci_low: lower confidence limit of mean(d) (t_{n−1}).
        ci_high: upper confidence limit of mean(d).
        n: number of complete pairs.
    """

    mean_diff: float
    sd_diff: float
    t: float
    df: int
    p: float
    ci_low: float
    ci_high: float
    n: int


def paired_ttest(a: Iterable[float], b: Iterable[float], confidence: float = 0.95) -> PairedTTest:
    """Paired Student's t test of the differences d = a − b (e.g. SR vs LR PSNR per subject).

    t = mean(d)/(s_d/√n), df = n − 1; CI = mean(d) ± t_{n−1, 1−α/2}·s_d/√n. Same statistic as
    ``scipy.stats.ttest_rel(a, b)``. Pairs with a NaN are dropped.

    Args:
        a: first measurement per subject, shape (n,).
        b: second measurement per subject, shape (n,).
        confidence: coverage of the interval of the mean difference.

    Returns:
        The :class:`PairedTTest`; t = ±inf (p = 0) when all differences are equal and non-zero, t = nan when all are 0.

    Raises:
        ValueError: fewer than 2 complete pairs or different lengths.
    """
    x, y = _paired_arrays(a, b, 2, "paired t-test")
    d = x - y
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1))
    if se == 0.0:
        t = math.nan if mean == 0.0 else math.copysign(math.inf, mean)
        p = math.nan if mean == 0.0 else 0.0
    else:
        t = mean / se
        p = float(2.0 * sps.t.sf(abs(t), n - 1))
    return PairedTTest(mean, sd, t, n - 1, p, mean - crit * se, mean + crit * se, n)


@dataclass(frozen=True)
class IdentityLine:
    """OLS fit y = a + b·x and its tests against the identity line y = x.

    Attributes:
        intercept: a.
        slope: b.
        slope_se: standard error of b.
        slope_ci_low: lower confidence limit of b (t_{n−2}).
        slope_ci_high: upper confidence limit of b.
        t_slope: (b − 1)/SE(b).
        p_slope: two-sided p of ``t_slope`` with n − 2 df (Dewey's identity "p").
        f_joint: F of H0: a = 0 and b = 1.
        p_joint: p of ``f_joint`` with (2, n − 2) df.
        r2: coefficient of determination of the fit.
        n: number of complete pairs.
    """

    intercept: float
    slope: float
    slope_se: float
    slope_ci_low: float
    slope_ci_high: float
    t_slope: float
    p_slope: float
    f_joint: float
    p_joint: float
    r2: float
    n: int


def identity_line_test(
    reference: Iterable[float], candidate: Iterable[float], confidence: float = 0.95
) -> IdentityLine:
    """Does ``candidate`` (SR or LR MUCCA) follow the identity line against ``reference`` (HR)?

    OLS y = a + b·x with x = reference, y = candidate. Slope test t = (b − 1)/SE(b), df = n − 2. Joint test of
    (a, b) = (0, 1): F = ((RSS₀ − RSS)/2)/(RSS/(n − 2)) with RSS₀ = Σ(y − x)², F(2, n − 2).

    Args:
        reference: x, shape (n,).
        candidate: y, shape (n,).
        confidence: coverage of the slope interval.

    Returns:
        The :class:`IdentityLine`.

    Raises:
        ValueError: fewer than 3 complete pairs or a constant reference.
    """
    x, y = _paired_arrays(reference, candidate, 3, "identity-line test")
    n = x.size
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx == 0.0:
        raise ValueError("identity-line test: the reference is constant")
    slope = float(xc @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    resid = y - intercept - slope * x
    rss = float(resid @ resid)
    dof = n - 2
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    sigma2 = rss / dof if dof > 0 else math.nan
    se = math.sqrt(sigma2 / sxx) if dof > 0 else math.nan
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, dof)) if dof > 0 else math.nan
    rss0 = float(((y - x) ** 2).sum())
    if se > 0:
        t_slope = (slope - 1.0) / se
        p_slope = float(2.0 * sps.t.sf(abs(t_slope), dof))
        f = ((rss0 - rss) / 2.0) / sigma2
        p_joint = float(sps.f.sf(f, 2, dof))
    else:  # perfect fit
        t_slope = 0.0 if slope == 1.0 else math.copysign(math.inf, slope - 1.0)
        p_slope = 1.0 if slope == 1.0 else 0.0
        f, p_joint = (0.0, 1.0) if rss0 == 0.0 else (math.inf, 0.0)
    return IdentityLine(intercept, slope, se, slope - crit * se, slope + crit * se, t_slope, p_slope, f, p_joint, r2, n)


@dataclass(frozen=True)
class BlandAltman:
    """Bland–Altman agreement of a with b (d = a − b).

    Attributes:
        bias: mean(d).
        sd: SD(d), ddof 1.
        loa_low: bias − 1.96·sd.
        loa_high: bias + 1.96·sd.
        bias_ci_low: lower confidence limit of the bias (SE = s/√n, t_{n−1}).
        bias_ci_high: upper confidence limit of the bias.
        loa_low_ci_low: lower confidence limit of the lower limit of agreement (SE ≈ √(3s²/n), t_{n−1}).
        loa_low_ci_high: upper confidence limit of the lower limit of agreement.
        loa_high_ci_low: lower confidence limit of the upper limit of agreement.
        loa_high_ci_high: upper confidence limit of the upper limit of agreement.
        n: number of complete pairs.
    """

    bias: float
    sd: float
    loa_low: float
    loa_high: float
    bias_ci_low: float
    bias_ci_high: float
    loa_low_ci_low: float
    loa_low_ci_high: float
    loa_high_ci_low: float
    loa_high_ci_high: float
    n: int


def bland_altman(a: Iterable[float], b: Iterable[float], confidence: float = 0.95, loa_z: float = 1.96) -> BlandAltman:
    """Bland–Altman bias and limits of agreement (Bland & Altman, Lancet 1986; CIs as in their 1999 paper).

    d = a − b; bias = mean(d); s = SD(d, ddof 1); LoA = bias ± 1.96·s; SE(bias) = s/√n; SE(LoA) ≈ √(3s²/n);
    confidence intervals use t_{n−1}.

    Args:
        a: candidate measurement (e.g. SR MUCCA), shape (n,).
        b: reference measurement (e.g. HR MUCCA), shape (n,).
        confidence: coverage of the intervals.
        loa_z: multiplier of s for the limits of agreement.

    Returns:
        The :class:`BlandAltman`.

    Raises:
        ValueError: fewer than 2 complete pairs.
    """
    x, y = _paired_arrays(a, b, 2, "Bland-Altman")
    d = x - y
    n = d.size
    bias, s = float(d.mean()), float(d.std(ddof=1))
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1))
    se_bias, se_loa = s / math.sqrt(n), math.sqrt(3.0 * s * s / n)
    low, high = bias - loa_z * s, bias + loa_z * s
    return BlandAltman(
        bias=bias,
        sd=s,
        loa_low=low,
        loa_high=high,
        bias_ci_low=bias - crit * se_bias,
        bias_ci_high=bias + crit * se_bias,
        loa_low_ci_low=low - crit * se_loa,
        loa_low_ci_high=low + crit * se_loa,
        loa_high_ci_low=high - crit * se_loa,
        loa_high_ci_high=high + crit * se_loa,
        n=n,
    )


# ---------------------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slope:
    """Coefficient of one predictor in an OLS model ``outcome ~ predictor + covariates``.

    Attributes:
        slope: coefficient of the predictor (the "effect slope" of Dewey et al.).
        se: its standard error.
        ci_low: lower confidence limit (t_{n−p}).
        ci_high: upper confidence limit.
        t: slope/se.
        p: two-sided p-value.
        df: residual degrees of freedom n − p (p = 2 + number of covariates).
        r2: R² of the whole model.
        n: number of complete rows.
        transform: transform applied to the outcome.
    """

    slope: float
    se: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    df: int
    r2: float
    n: int
    transform: str = "none"


def regression_slope(
    data: pd.DataFrame,
    outcome: str,
    predictor: str,
    covariates: Sequence[str] = ("age", "sex"),
    transform: OutcomeTransform = "none",
    confidence: float = 0.95,
) -> Slope:
    """OLS ``outcome ~ 1 + predictor + covariates`` and the predictor's coefficient.

    β̂ = (XᵀX)⁻¹Xᵀy, SE from σ̂²(XᵀX)⁻¹ with σ̂² = RSS/(n − p); CI = β̂ ± t_{n−p}·SE. The outcome may be transformed
    first (``log``: ln y, needs y > 0; ``inverse``: 1/y, needs y ≠ 0) for skewed outcomes such as T25FW or 9HPT.

    Args:
        data: one row per subject.
        outcome: outcome column (e.g. ``edss``).
        predictor: predictor column (e.g. ``SR`` MUCCA in mm²).
        covariates: adjustment columns (numeric).
        transform: ``none``, ``log`` or ``inverse``.
        confidence: coverage of the slope interval.

    Returns:
        The :class:`Slope`.

    Raises:
        ValueError: missing or non-numeric columns, too few rows, or outcome values the transform cannot take.
    """
    k = len(covariates)
    values = _numeric_matrix(data, [outcome, predictor, *covariates], k + 3, "regression")
    y = values[:, 0]
    if transform == "log":
        if (y <= 0).any():
            raise ValueError(f"regression: log transform needs {outcome!r} > 0")
        y = np.log(y)
    elif transform == "inverse":
        if (y == 0).any():
            raise ValueError(f"regression: inverse transform needs {outcome!r} != 0")
        y = 1.0 / y
    elif transform != "none":
        raise ValueError(f"transform must be 'none', 'log' or 'inverse', got {transform!r}")
    n = len(y)
    X = np.column_stack([np.ones(n), values[:, 1:]])
    beta, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    if rank < X.shape[1]:
        raise ValueError(f"regression: the design [1, {predictor}, {', '.join(covariates)}] is rank deficient")
    resid = y - X @ beta
    dof = n - X.shape[1]
    sigma2 = float(resid @ resid) / dof
    se = math.sqrt(sigma2 * float(np.linalg.inv(X.T @ X)[1, 1]))
    t = float(beta[1]) / se if se > 0 else math.copysign(math.inf, float(beta[1]))
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, dof))
    tss = float(((y - y.mean()) ** 2).sum())
    return Slope(
        slope=float(beta[1]),
        se=se,
        ci_low=float(beta[1]) - crit * se,
        ci_high=float(beta[1]) + crit * se,
        t=t,
        p=float(2.0 * sps.t.sf(abs(t), dof)),
        df=dof,
        r2=1.0 - float(resid @ resid) / tss if tss > 0 else math.nan,
        n=n,
        transform=transform,
    )


@dataclass(frozen=True, eq=False)
class FitBand:
    """OLS line y = a + b·x evaluated on a grid, with the pointwise confidence band of the mean response.

    Attributes:
        intercept: a.
        slope: b.
        grid: x values the line is evaluated at, shape (m,).
        fit: a + b·grid, shape (m,).
        low: lower confidence limit of the mean response on ``grid``, shape (m,).
        high: upper confidence limit of the mean response on ``grid``, shape (m,).
        n: number of complete pairs.
    """

    intercept: float
    slope: float
    grid: np.ndarray
    fit: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


def ols_fit_band(x: Iterable[float], y: Iterable[float], grid: Iterable[float], confidence: float = 0.95) -> FitBand:
    """OLS line of y on x and the confidence band of its mean on ``grid`` (the shaded band of a scatter plot's fit).

    Least squares (``numpy.polyfit``, degree 1): b = Σ(x − x̄)(y − ȳ)/Sxx with Sxx = Σ(x − x̄)², a = ȳ − b·x̄;
    s² = RSS/(n − 2). At each grid value x₀ the mean response ŷ₀ = a + b·x₀ has SE = s·√(1/n + (x₀ − x̄)²/Sxx), and
    the band is ŷ₀ ± t_{n−2, 1−α/2}·SE (a pointwise interval of the regression line, not a prediction interval for
    new subjects). Same limits as statsmodels'
    ``OLS(...).fit().get_prediction(...).conf_int()``. Pairs with a NaN are dropped.

    Args:
        x: predictor per subject, shape (n,).
        y: response per subject, shape (n,).
        grid: x values to evaluate the line and band at, shape (m,).
        confidence: two-sided coverage of the band.

    Returns:
        The :class:`FitBand`.

    Raises:
        ValueError: fewer than 3 complete pairs, different lengths or a constant x.
    """
    a, b = _paired_arrays(x, y, 3, "OLS fit band")
    if np.ptp(a) == 0.0:
        raise ValueError("OLS fit band: x is constant")
    n = a.size
    slope, intercept = (float(c) for c in np.polyfit(a, b, 1))
    resid = b - (intercept + slope * a)
    s = math.sqrt(float(resid @ resid) / (n - 2))
    sxx = float(((a - a.mean()) ** 2).sum())
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, n - 2))
    points = np.asarray(grid, dtype=float).ravel()
    fit = intercept + slope * points
    half = crit * s * np.sqrt(1.0 / n + (points - a.mean()) ** 2 / sxx)
    return FitBand(intercept, slope, points, fit, fit - half, fit + half, n)


@dataclass(frozen=True)
class T1wCorrection:
    """Additive T1w → T2w MUCCA correction and its check.

    Attributes:
        delta: δ = mean(MUCCA_T2 − MUCCA_T1) (mm²); add it to T1w values.
        delta_se: standard error of δ.
        delta_ci_low: lower confidence limit of δ (t_{n−1}).
        delta_ci_high: upper confidence limit of δ.
        r: Pearson correlation of T1w and T2w values.
        slope: OLS slope of T2 ~ T1 + δ.
        slope_se: its standard error.
        t_slope: (slope − 1)/slope_se.
        p_slope: two-sided p (df n − 2): a large p means the corrected values are interchangeable up to noise.
        n: number of paired sessions.
    """

    delta: float
    delta_se: float
    delta_ci_low: float
    delta_ci_high: float
    r: float
    slope: float
    slope_se: float
    t_slope: float
    p_slope: float
    n: int


def t1w_to_t2w_correction(t1w: Iterable[float], t2w: Iterable[float], confidence: float = 0.95) -> T1wCorrection:
    """Additive correction of T1w-brain MUCCA towards T2w-spine MUCCA (Dewey et al., "Correction for T1w").

    A linear fit of T2 on T1 with the slope fixed at 1 gives the least-squares offset δ = mean(T2 − T1); the corrected
    value is T1,corr = T1 + δ. Check: OLS T2 ~ T1,corr and t = (b − 1)/SE(b) with n − 2 df (Dewey et al.: ρ = 0.974,
    β = 9.184, corrected slope p = 0.100).

    Args:
        t1w: MUCCA from T1w brain images (mm²), one per paired HR session, shape (n,).
        t2w: MUCCA from T2w spine images of the same sessions (mm²), shape (n,).
        confidence: coverage of the interval of δ.

    Returns:
        The :class:`T1wCorrection`.
    """
    t1, t2 = _paired_arrays(t1w, t2w, 3, "T1w correction")
    diff = paired_ttest(t2, t1, confidence)
    fit = identity_line_test(t1 + diff.mean_diff, t2, confidence)
    return T1wCorrection(
        delta=diff.mean_diff,
        delta_se=diff.sd_diff / math.sqrt(diff.n),
        delta_ci_low=diff.ci_low,
        delta_ci_high=diff.ci_high,
        r=_corr(t1, t2, "T1w correction"),
        slope=fit.slope,
        slope_se=fit.slope_se,
        t_slope=fit.t_slope,
        p_slope=fit.p_slope,
        n=diff.n,
    )


# ---------------------------------------------------------------------------------------------------------------
# Tidy-table helpers: subject tables, randomised-resolution cohorts, bootstrap
# ---------------------------------------------------------------------------------------------------------------


def pivot_methods(
    rows: pd.DataFrame,
    metric: str,
    setting: str | None = None,
    index: Sequence[str] = ("subject",),
    columns: str = "method",
) -> pd.DataFrame:
    """One row per subject, one column per method, from tidy result rows.

    Args:
        rows: tidy rows with ``subject``, ``method``, ``metric``, ``value`` (and ``setting`` when ``setting`` given).
        metric: metric to keep (e.g. ``mucca_mm2``).
        setting: keep this setting only (``None``: all rows of the metric, which must then be unique per subject).
        index: identifying columns kept as the index (``subject``, optionally ``session``).
        columns: column whose values become the new columns.

    Returns:
        Frame indexed by ``index`` with one float column per method.

    Raises:
        ValueError: missing columns, or several values for one subject and method.
    """
    need = [*index, columns, "metric", "value"] + (["setting"] if setting is not None else [])
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise ValueError(f"tidy rows lack column(s) {missing}; available: {list(rows.columns)}")
    sel = rows[rows["metric"] == metric]
    if setting is not None:
        sel = sel[sel["setting"].astype(str) == str(setting)]
    dup = sel.duplicated([*index, columns], keep=False)
    if dup.any():
        example = sel.loc[dup, [*index, columns]].drop_duplicates().head(3).to_dict("records")
        raise ValueError(f"several {metric!r} values per {[*index, columns]} (e.g. {example}); select a setting")
    wide = sel.pivot(index=list(index), columns=columns, values="value").astype(float)
    wide.columns.name = None
    return wide


def random_resolution_cohort(
    rows: pd.DataFrame,
    settings: Sequence[str] | None = None,
    seed: int = 0,
    label: str = "random",
    subject_col: str = "subject",
    setting_col: str = "setting",
) -> pd.DataFrame:
    """The "simulated real-world cohort" of Dewey et al.: one resolution drawn per subject.

    Each subject gets one setting drawn uniformly from ``settings`` (seeded, in sorted subject order); rows of that
    subject in the drawn setting are kept (all methods, so the LR and SR cohorts share the draw), rows in the other
    drawn-from settings are dropped, and rows whose setting is not in ``settings`` (e.g. setting-independent HR rows)
    are kept. Kept rows get ``setting = label`` and the original setting in ``drawn_setting``.

    Args:
        rows: tidy rows with ``subject_col`` and ``setting_col``.
        settings: settings to draw from (default: every setting present, sorted).
        seed: seed of :func:`numpy.random.default_rng`.
        label: setting label of the returned rows.
        subject_col: subject column.
        setting_col: setting column.

    Returns:
        The filtered copy of ``rows``.
    """
    missing = [c for c in (subject_col, setting_col) if c not in rows.columns]
    if missing:
        raise ValueError(f"random_resolution_cohort: missing column(s) {missing}")
    setting_str = rows[setting_col].astype(str)
    choices = sorted(setting_str.unique()) if settings is None else [str(s) for s in settings]
    if not choices:
        raise ValueError("random_resolution_cohort: no settings to draw from")
    subjects = sorted(rows[subject_col].astype(str).unique())
    rng = np.random.default_rng(seed)
    draw = dict(zip(subjects, rng.choice(len(choices), size=len(subjects)), strict=True))
    drawn = rows[subject_col].astype(str).map(lambda s: choices[draw[s]])
    in_pool = setting_str.isin(choices)
    keep = ~in_pool | (setting_str == drawn)
    out = rows.loc[keep].copy()
    out["drawn_setting"] = np.where(in_pool[keep], setting_str[keep], "")
    out[setting_col] = label
    return out


@dataclass(frozen=True)
class BootstrapSummary:
    """Statistics recomputed on subject-level subsamples.

    Attributes:
        samples: one row per subsample, one column per statistic.
        summary: one row per statistic with ``mean``, ``sd``, ``q2.5``, ``q97.5``.
        mean_p: mean of the ``p`` statistic over subsamples (nan when none has one).
        fraction_significant: fraction of subsamples with p < ``alpha``.
        n_samples: number of subsamples.
        sample_size: subjects per subsample.
        replace: whether subjects were drawn with replacement.
        alpha: significance level.
    """

    samples: pd.DataFrame
    summary: pd.DataFrame
    mean_p: float
    fraction_significant: float
    n_samples: int
    sample_size: int
    replace: bool
    alpha: float


def bootstrap_subsamples(
    data: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], Mapping[str, float]],
    n_samples: int = 100,
    sample_size: int = 50,
    subject_col: str = "subject",
    replace: bool = True,
    seed: int = 0,
    alpha: float = 0.05,
    p_key: str = "p",
) -> BootstrapSummary:
    """Recompute ``statistic`` on ``n_samples`` random subsamples of ``sample_size`` subjects (Dewey et al.: 100 × 50).

    Subjects move together: every row of a drawn subject enters the subsample. A subject drawn twice (``replace=True``)
    appears twice under distinct ids ``<subject>#<copy>`` so per-subject grouping (mixed models) treats the copies as
    different subjects. A statistic that fails on a subsample (e.g. a constant variable) yields NaN for that sample.

    Args:
        data: rows with ``subject_col`` (one or more rows per subject).
        statistic: function of a subsample returning named floats, including ``p_key`` for the significance summary.
        n_samples: number of subsamples B.
        sample_size: subjects per subsample.
        subject_col: subject column.
        replace: draw subjects with replacement (bootstrap) or without (subsampling).
        seed: seed of :func:`numpy.random.default_rng`.
        alpha: significance level of ``fraction_significant``.
        p_key: name of the p-value among the statistic's outputs.

    Returns:
        The :class:`BootstrapSummary`.

    Raises:
        ValueError: ``sample_size`` larger than the number of subjects when drawing without replacement.
    """
    if subject_col not in data.columns:
        raise ValueError(f"bootstrap: missing subject column {subject_col!r}")
    if n_samples < 1 or sample_size < 1:
        raise ValueError("bootstrap: n_samples and sample_size must be positive")
    positions = data.groupby(subject_col, sort=True).indices
    subjects = list(positions)
    if not replace and sample_size > len(subjects):
        raise ValueError(f"bootstrap: cannot draw {sample_size} of {len(subjects)} subjects without replacement")
    rng = np.random.default_rng(seed)
    ids = np.asarray([str(s) for s in subjects], dtype=object)
    records: list[dict[str, float]] = []
    for _ in range(n_samples):
        picks = rng.choice(len(subjects), size=sample_size, replace=replace)
        # Copy number of each pick (0 for the first draw of a subject, 1 for the second…).
        order = np.argsort(picks, kind="stable")
        sorted_picks = picks[order]
        first = np.searchsorted(sorted_picks, sorted_picks, side="left")
        copy = np.empty_like(picks)
        copy[order] = np.arange(sample_size) - first
        index = np.concatenate([positions[subjects[i]] for i in picks])
        counts = np.array([len(positions[subjects[i]]) for i in picks])
        labels = np.repeat([ids[i] if c == 0 else f"{ids[i]}#{c}" for i, c in zip(picks, copy, strict=True)], counts)
        sample = data.iloc[index].reset_index(drop=True)
        if copy.any():
            sample[subject_col] = labels
        try:
            records.append({k: float(v) for k, v in statistic(sample).items()})
        except (ValueError, np.linalg.LinAlgError) as err:
            log.debug("bootstrap sample failed: %s", err)
            records.append({})
    samples = pd.DataFrame.from_records(records, index=pd.RangeIndex(n_samples, name="sample"))
    summary = pd.DataFrame(
        {
            "mean": samples.mean(),
            "sd": samples.std(ddof=1),
            "q2.5": samples.quantile(0.025),
            "q97.5": samples.quantile(0.975),
            "n_valid": samples.notna().sum(),
        }
    )
    summary.index.name = "statistic"
    if p_key in samples.columns and samples[p_key].notna().any():
        p = samples[p_key]
        mean_p, frac = float(p.mean()), float((p.dropna() < alpha).mean())
    else:
        mean_p, frac = math.nan, math.nan
    return BootstrapSummary(samples, summary, mean_p, frac, n_samples, sample_size, replace, alpha)


# ---------------------------------------------------------------------------------------------------------------
# Longitudinal mixed-effects model
# ---------------------------------------------------------------------------------------------------------------


def add_time_since_first_scan(
    data: pd.DataFrame,
    subject_col: str = "subject",
    date_col: str = "scan_date",
    age_col: str = "age",
) -> pd.DataFrame:
    """Add ``time`` (years since the subject's first scan, 365.25-day years) and ``age0`` (age at the first scan).

    Args:
        data: one row per image with a datetime-like ``date_col`` and numeric ``age_col`` (age at each visit, or a
            constant baseline age).
        subject_col: subject column.
        date_col: scan date column.
        age_col: age column (years).

    Returns:
        A copy of ``data`` with ``time`` and ``age0``.
    """
    missing = [c for c in (subject_col, date_col, age_col) if c not in data.columns]
    if missing:
        raise ValueError(f"longitudinal table lacks column(s) {missing}; available: {list(data.columns)}")
    out = data.copy()
    dates = pd.to_datetime(out[date_col])
    first = dates.groupby(out[subject_col]).transform("min")
    out["time"] = (dates - first).dt.total_seconds() / (365.25 * 86400.0)
    is_first = dates == first
    age_first = out[age_col].where(is_first).groupby(out[subject_col]).transform("mean")
    out["age0"] = age_first.astype(float)
    return out


def atrophy_formula(image_2d: bool = False, response: str = "value") -> str:
    """Fixed-effects formula of the atrophy model: ``response ~ sex + age0 + time + age0:time [+ image_2d]``."""
    return f"{response} ~ sex + age0 + time + age0:time" + (" + image_2d" if image_2d else "")


@dataclass(frozen=True)
class MixedModelFit:
    """Fixed effects of a linear mixed-effects model and how it was fitted.

    Attributes:
        fixed_effects: one row per fixed term: ``term``, ``coef``, ``se``, ``z``, ``p``, ``ci_low``, ``ci_high``
            (Wald z; lmerTest's Satterthwaite t would differ slightly).
        model: ``random_slope``, ``random_slope_lbfgs_powell`` or ``random_intercept``: the first that converged.
        converged: whether that fit converged without warnings (False only when every attempt failed).
        n_obs: number of observations.
        n_groups: number of subjects.
        formula: fixed-effects formula.
        attempts: one line per attempt: model, outcome and warnings.
    """

    fixed_effects: pd.DataFrame
    model: str
    converged: bool
    n_obs: int
    n_groups: int
    formula: str
    attempts: tuple[str, ...] = field(default_factory=tuple)

    def coef(self, term: str) -> pd.Series:
        """The row of ``fixed_effects`` for ``term`` (e.g. ``time``)."""
        rows = self.fixed_effects[self.fixed_effects["term"] == term]
        if rows.empty:
            raise KeyError(f"no fixed effect {term!r}; terms: {list(self.fixed_effects['term'])}")
        return rows.iloc[0]


def _fit_once(
    formula: str, frame: pd.DataFrame, groups: str, re_formula: str | None, reml: bool, **kwargs: object
) -> tuple[object | None, list[str]]:
    """One MixedLM fit; returns (result or None, problems) where problems lists errors and convergence warnings."""
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm(formula, frame, groups=frame[groups], re_formula=re_formula)
            result = model.fit(reml=reml, **kwargs)
        except (ValueError, np.linalg.LinAlgError) as err:
            return None, [f"failed: {err}"]
    problems = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, ConvergenceWarning)})
    if not result.converged and not problems:
        problems = ["converged=False"]
    if not np.all(np.isfinite(np.asarray(result.bse_fe, dtype=float))):
        problems.append("non-finite standard errors")
    return result, problems


def _warm_start(intercept_fit: object, k_re: int) -> object:
    """Start values for a random-slope fit: fixed effects and intercept variance of the random-intercept fit."""
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    cov = np.eye(k_re) * 0.01
    cov[0, 0] = max(float(np.asarray(intercept_fit.cov_re)[0, 0]) / float(intercept_fit.scale), 0.01)
    return MixedLMParams.from_components(fe_params=np.asarray(intercept_fit.fe_params, dtype=float), cov_re=cov)


def fit_mixed_model(
    data: pd.DataFrame,
    formula: str | None = None,
    groups: str = "subject",
    re_formula: str = "~time",
    reml: bool = True,
    confidence: float = 0.95,
) -> MixedModelFit:
    """Linear mixed-effects model with a random intercept and slope per subject (statsmodels ``MixedLM``).

    y_it = x_itᵀβ + b_0i + b_1i·t + ε_it with (b_0i, b_1i) ~ N(0, G), ε ~ N(0, σ²) (Laird & Ware 1982), fitted by
    REML. Default formula (Dewey et al., Tables 1–2): ``value ~ sex + age0 + time + age0:time``, time in years since
    the first scan, age0 = age at first scan; add ``+ image_2d`` for the 2-D image-type term.

    Fallback chain when a fit raises, does not converge or emits a ``ConvergenceWarning``: random slope (default
    optimiser) → random slope with ``method=["lbfgs", "powell"]`` → random intercept only. The random-slope fits start
    from the fixed effects and intercept variance of a random-intercept fit (a small slope variance otherwise): with
    between-subject variances much larger than the residual one, as for MUCCA, statsmodels' default start values
    often stall. Every attempt is logged and recorded in ``attempts``.

    Args:
        data: one row per image; columns of the formula plus ``groups``.
        formula: fixed-effects formula (default :func:`atrophy_formula`).
        groups: subject column.
        re_formula: random-effects formula of the random-slope attempts (must include the intercept).
        reml: REML (True) or maximum likelihood.
        confidence: coverage of the Wald intervals.

    Returns:
        The :class:`MixedModelFit` of the first clean attempt (else of the last attempt that produced estimates, with
        ``converged=False``).

    Raises:
        ValueError: missing columns, or no attempt produced estimates.
    """
    formula = formula or atrophy_formula()
    if groups not in data.columns:
        raise ValueError(f"mixed model: missing group column {groups!r}")
    tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula))
    missing = sorted(t for t in tokens if t not in data.columns and t not in {"C", "np", "I"})
    if missing:
        raise ValueError(f"mixed model: formula {formula!r} needs column(s) {missing}")
    frame = data.dropna(subset=[c for c in data.columns if c in tokens or c == groups]).reset_index(drop=True)

    intercept_fit, intercept_problems = _fit_once(formula, frame, groups, None, reml)
    start: dict[str, object] = {}
    if intercept_fit is not None:
        try:
            import statsmodels.formula.api as smf

            k_re = smf.mixedlm(formula, frame, groups=frame[groups], re_formula=re_formula).k_re
            start = {"start_params": _warm_start(intercept_fit, k_re)}
        except (ValueError, np.linalg.LinAlgError) as err:
            log.debug("no warm start: %s", err)
    attempts: list[str] = []
    fallback: tuple[str, object] | None = None
    for name in ("random_slope", "random_slope_lbfgs_powell", "random_intercept"):
        if name == "random_intercept":
            result, problems = intercept_fit, intercept_problems
        else:
            kwargs = {"method": ["lbfgs", "powell"]} if name.endswith("powell") else {}
            result, problems = _fit_once(formula, frame, groups, re_formula, reml, **start, **kwargs)
        attempts.append(f"{name}: " + ("converged" if not problems else "not converged (" + "; ".join(problems) + ")"))
        if result is None:
            log.warning("mixed model %s failed: %s", name, "; ".join(problems))
            continue
        n_groups = len(result.model.group_labels)
        if not problems:
            log.info("mixed model: %s converged (%d observations, %d subjects)", name, result.nobs, n_groups)
            fit = _fixed_effects(result, confidence)
            return MixedModelFit(fit, name, True, int(result.nobs), n_groups, formula, tuple(attempts))
        log.warning("mixed model %s did not converge cleanly (%s); trying the next model", name, "; ".join(problems))
        fallback = (name, result)
    if fallback is None:
        raise ValueError(f"mixed model: no fit succeeded ({' | '.join(attempts)})")
    name, result = fallback
    n_groups = len(result.model.group_labels)
    fit = _fixed_effects(result, confidence)
    return MixedModelFit(fit, name, False, int(result.nobs), n_groups, formula, tuple(attempts))


def _fixed_effects(result: object, confidence: float) -> pd.DataFrame:
    names = list(result.model.exog_names)
    params = np.asarray(result.fe_params, dtype=float)
    se = np.asarray(result.bse_fe, dtype=float)
    z = params / se
    crit = _z(confidence)
    return pd.DataFrame(
        {
            "term": names,
            "coef": params,
            "se": se,
            "z": z,
            "p": 2.0 * sps.norm.sf(np.abs(z)),
            "ci_low": params - crit * se,
            "ci_high": params + crit * se,
        }
    )
