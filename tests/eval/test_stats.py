"""Cohort statistics (docs/evaluation.md §5): reference values, algebraic identities and recovery of planted effects.

Recovery checks use 99 % intervals (``CONFIDENCE``): with a dozen planted quantities, 95 % intervals would miss one
of them in about half of all seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from mrisr.core.errors import MrisrInputError
from mrisr.eval import clinical, cohort, stats

CONFIDENCE = 0.99

# ---------------------------------------------------------------------------------------------------------------
# Williams' test
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r12", "r13", "r23", "n", "t", "df", "p"),
    [(0.30, 0.40, 0.50, 100, -1.0767, 97, 0.2843), (0.5447, 0.8, 0.0729, 70, -2.8113, 67, 0.0065)],
)
def test_williams_matches_cocor_reference(r12: float, r13: float, r23: float, n: int, t: float, df: int, p: float):
    result = stats.williams_test(r12, r13, r23, n)
    assert round(result.t, 4) == t
    assert result.df == df
    assert round(result.p, 4) == p


def test_williams_uses_effective_n_with_covariates_and_is_antisymmetric():
    adjusted = stats.williams_test(0.30, 0.40, 0.50, 102, n_covariates=2)
    plain = stats.williams_test(0.30, 0.40, 0.50, 100)
    assert adjusted.t == pytest.approx(plain.t) and adjusted.df == 97 and adjusted.n_eff == 100 and adjusted.n == 102
    swapped = stats.williams_test(0.40, 0.30, 0.50, 100)
    assert swapped.t == pytest.approx(-plain.t) and swapped.p == pytest.approx(plain.p)
    assert stats.williams_test(0.4, 0.4, 0.6, 50).t == 0.0


def test_williams_rejects_invalid_input():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        stats.williams_test(1.2, 0.3, 0.2, 50)
    with pytest.raises(ValueError, match="n - n_covariates > 3"):
        stats.williams_test(0.3, 0.4, 0.5, 5, n_covariates=2)
    with pytest.raises(ValueError, match="positive definite"):
        stats.williams_test(0.9, -0.9, 0.9, 50)


# ---------------------------------------------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------------------------------------------


def _correlated(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)


def test_pearson_matches_scipy_including_fisher_interval():
    x, y = _correlated(40, 0.5, 0)
    ours = stats.pearson_correlation(x, y)
    ref = sps.pearsonr(x, y)
    ci = ref.confidence_interval(0.95)
    assert ours.r == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert ours.df == 38 and ours.n == 40
    spearman = stats.pearson_correlation(x, y, method="spearman")
    assert spearman.r == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_fisher_interval_formula_and_nan_pairs():
    low, high = stats.fisher_ci(0.5, 28, n_covariates=2)
    half = 1.959963984540054 / math.sqrt(28 - 2 - 3)
    assert (low, high) == pytest.approx((math.tanh(math.atanh(0.5) - half), math.tanh(math.atanh(0.5) + half)))
    assert all(math.isnan(v) for v in stats.fisher_ci(0.5, 3))
    result = stats.pearson_correlation([1, 2, 3, np.nan, 5], [2, 1, 4, 3, np.nan])
    assert result.n == 3
    with pytest.raises(ValueError, match="constant"):
        stats.pearson_correlation([1, 1, 1, 1], [1, 2, 3, 4])


def _covariate_frame(n: int = 80, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 70, n)
    sex = rng.integers(0, 2, n).astype(float)
    x = 0.3 * age + 2 * sex + rng.normal(size=n) * 3
    y = -0.1 * age + 1.5 * sex + 0.4 * x + rng.normal(size=n) * 2
    return pd.DataFrame({"x": x, "y": y, "age": age, "sex": sex})


def test_partial_correlation_equals_residual_method():
    data = _covariate_frame()
    z = sm.add_constant(data[["age", "sex"]].to_numpy())
    rx = sm.OLS(data["x"].to_numpy(), z).fit().resid
    ry = sm.OLS(data["y"].to_numpy(), z).fit().resid
    expected = float(np.corrcoef(rx, ry)[0, 1])
    result = stats.partial_correlation(data, "x", "y", ["age", "sex"])
    assert abs(result.r - expected) < 1e-10
    df = len(data) - 2 - 2
    t = expected * math.sqrt(df / (1 - expected**2))
    assert result.df == df and result.t == pytest.approx(t, rel=1e-9)
    assert result.p == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-9)
    assert (result.ci_low, result.ci_high) == pytest.approx(stats.fisher_ci(expected, len(data), 2), abs=1e-9)
    # Spearman: the residual method on ranks of every column.
    ranks = data.rank()
    zr = sm.add_constant(ranks[["age", "sex"]].to_numpy())
    r_rank = np.corrcoef(sm.OLS(ranks["x"].to_numpy(), zr).fit().resid, sm.OLS(ranks["y"].to_numpy(), zr).fit().resid)[
        0, 1
    ]
    assert abs(stats.partial_correlation(data, "x", "y", ["age", "sex"], method="spearman").r - r_rank) < 1e-10
    # No covariates: the plain correlation.
    assert stats.partial_correlation(data, "x", "y", []).r == pytest.approx(np.corrcoef(data.x, data.y)[0, 1])


def test_partial_correlation_names_bad_columns_and_drops_missing_rows():
    data = _covariate_frame()
    with pytest.raises(ValueError, match="'edss'"):
        stats.partial_correlation(data, "x", "edss", ["age", "sex"])
    with pytest.raises(ValueError, match=r"'sex'.*not numeric"):
        stats.partial_correlation(data.assign(sex=np.where(data.sex > 0, "M", "F")), "x", "y", ["age", "sex"])
    holes = data.copy()
    holes.loc[:4, "y"] = np.nan
    assert stats.partial_correlation(holes, "x", "y", ["age", "sex"]).n == len(data) - 5


def test_dependent_correlation_test_uses_partial_correlations():
    data = _covariate_frame().assign(w=lambda d: d.x + np.random.default_rng(5).normal(size=len(d)) * 4)
    result = stats.dependent_correlation_test(data, "y", "x", "w", ["age", "sex"])
    assert result.reference.r == pytest.approx(stats.partial_correlation(data, "y", "x", ["age", "sex"]).r)
    expected = stats.williams_test(result.reference.r, result.candidate.r, result.between.r, len(data), 2)
    assert result.williams.t == pytest.approx(expected.t) and result.williams.df == len(data) - 2 - 3


@pytest.fixture(scope="module")
def synthetic() -> cohort.SyntheticCohort:
    return cohort.simulate_synthetic_cohort(n_subjects=400, seed=7)


def _subject_frame(c: cohort.SyntheticCohort, setting: str = "3||0.0") -> pd.DataFrame:
    wide = stats.pivot_methods(c.results, "mucca_mm2", setting).reset_index()
    return wide.merge(c.clinical, on="subject")


def test_planted_partial_correlations_and_slopes_are_recovered(synthetic: cohort.SyntheticCohort):
    data = _subject_frame(synthetic)
    assert synthetic.results["backend"].str.contains("synthetic").all()
    assert data["subject"].str.startswith("synthetic-").all()
    for outcome, truth in synthetic.truth["outcomes"].items():
        corr = stats.partial_correlation(data, "HR", outcome, ["age", "sex"], confidence=CONFIDENCE)
        assert corr.ci_low < truth["partial_r"] < corr.ci_high, outcome
        assert corr.p < 0.001
        slope = stats.regression_slope(data, outcome, "HR", ["age", "sex"], confidence=CONFIDENCE)
        assert slope.ci_low < truth["slope"] < slope.ci_high, outcome


def test_regression_slope_matches_statsmodels_ols(synthetic: cohort.SyntheticCohort):
    data = _subject_frame(synthetic)
    fit = sm.OLS(data["edss"].to_numpy(), sm.add_constant(data[["LR", "age", "sex"]].to_numpy())).fit()
    ours = stats.regression_slope(data, "edss", "LR", ["age", "sex"])
    assert ours.slope == pytest.approx(fit.params[1], rel=1e-9)
    assert ours.se == pytest.approx(fit.bse[1], rel=1e-9)
    assert ours.p == pytest.approx(fit.pvalues[1], rel=1e-6)
    assert (ours.ci_low, ours.ci_high) == pytest.approx(tuple(fit.conf_int()[1]), rel=1e-9)
    assert ours.r2 == pytest.approx(fit.rsquared) and ours.df == int(fit.df_resid)
    logged = stats.regression_slope(data.assign(t=data.t25fw.abs() + 1), "t", "LR", transform="log")
    assert logged.transform == "log" and np.isfinite(logged.slope)
    with pytest.raises(ValueError, match="log transform"):
        stats.regression_slope(data.assign(t=data.edss - 100), "t", "LR", transform="log")


def test_paired_ttest_matches_scipy_and_recovers_planted_psnr_gain(synthetic: cohort.SyntheticCohort):
    sr = stats.pivot_methods(synthetic.results, "psnr", "3||0.5")
    result = stats.paired_ttest(sr["SR"], sr["LR"], confidence=CONFIDENCE)
    ref = sps.ttest_rel(sr["SR"], sr["LR"])
    assert result.t == pytest.approx(ref.statistic) and result.p == pytest.approx(ref.pvalue, abs=1e-300)
    assert result.ci_low < synthetic.truth["psnr_margin_db"] < result.ci_high
    assert result.df == len(sr) - 1


def test_identity_line_test_against_statsmodels_and_planted_lr_slope(synthetic: cohort.SyntheticCohort):
    wide = stats.pivot_methods(synthetic.results, "mucca_mm2", "3||0.0")
    lr = stats.identity_line_test(wide["HR"], wide["LR"], confidence=CONFIDENCE)
    fit = sm.OLS(wide["LR"].to_numpy(), sm.add_constant(wide["HR"].to_numpy())).fit()
    assert lr.slope == pytest.approx(fit.params[1]) and lr.r2 == pytest.approx(fit.rsquared)
    assert lr.t_slope == pytest.approx((fit.params[1] - 1) / fit.bse[1])
    joint = fit.f_test("const = 0, x1 = 1")
    assert lr.f_joint == pytest.approx(float(np.squeeze(joint.fvalue))) and lr.p_joint == pytest.approx(joint.pvalue)
    assert lr.slope_ci_low < 1 + synthetic.truth["lr_excess_slope"] < lr.slope_ci_high
    assert lr.p_slope < 0.001
    exact = stats.identity_line_test([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert exact.p_slope == 1.0 and exact.p_joint == 1.0


def test_bland_altman_hand_computed_example():
    a = np.array([10.0, 12.0, 11.0, 14.0, 13.0])
    b = np.array([9.0, 12.5, 10.0, 12.0, 13.5])
    # d = [1, -0.5, 1, 2, -0.5]; mean 0.6; Σ(d − 0.6)² = 0.16 + 1.21 + 0.16 + 1.96 + 1.21 = 4.7; s² = 4.7/4.
    s = math.sqrt(4.7 / 4)
    result = stats.bland_altman(a, b)
    assert result.bias == pytest.approx(0.6) and result.sd == pytest.approx(s)
    assert (result.loa_low, result.loa_high) == pytest.approx((0.6 - 1.96 * s, 0.6 + 1.96 * s))
    t4 = sps.t.ppf(0.975, 4)
    assert result.bias_ci_high - result.bias == pytest.approx(t4 * s / math.sqrt(5))
    assert result.loa_high_ci_high - result.loa_high == pytest.approx(t4 * math.sqrt(3 * s * s / 5))
    assert result.n == 5


def test_t1w_correction_recovers_planted_offset():
    rng = np.random.default_rng(3)
    t2 = rng.normal(75, 7, 150)
    t1 = t2 - 9.184 + rng.normal(0, 1.0, 150)
    corr = stats.t1w_to_t2w_correction(t1, t2, confidence=CONFIDENCE)
    assert corr.delta_ci_low < 9.184 < corr.delta_ci_high
    assert np.mean(t1 + corr.delta) == pytest.approx(np.mean(t2))
    assert corr.r > 0.97 and corr.n == 150
    biased = stats.t1w_to_t2w_correction(t1, 1.3 * t2)
    assert biased.p_slope < 0.001


# ---------------------------------------------------------------------------------------------------------------
# Randomised-resolution cohort and bootstrap
# ---------------------------------------------------------------------------------------------------------------


def test_random_resolution_cohort_draws_one_setting_per_subject(synthetic: cohort.SyntheticCohort):
    rows = synthetic.results[synthetic.results.metric == "mucca_mm2"]
    drawn = stats.random_resolution_cohort(rows, seed=11)
    assert set(drawn["setting"]) == {"random"}
    per_subject = drawn.groupby("subject")["drawn_setting"].nunique()
    assert (per_subject == 1).all() and len(per_subject) == 400
    assert (drawn.groupby("subject").size() == 3).all()  # HR, LR and SR share the draw
    counts = drawn.drop_duplicates("subject")["drawn_setting"].value_counts()
    assert set(counts.index) == set(cohort.DEWEY_SETTINGS) and counts.min() > 60
    again = stats.random_resolution_cohort(rows, seed=11)
    pd.testing.assert_frame_equal(drawn, again)


def test_bootstrap_moves_subjects_together_and_relabels_copies():
    data = pd.DataFrame({"subject": np.repeat([f"s{i}" for i in range(10)], 3), "v": np.arange(30.0)})
    seen: list[pd.DataFrame] = []

    def statistic(sample: pd.DataFrame) -> dict[str, float]:
        seen.append(sample)
        return {"rows": len(sample), "subjects": sample["subject"].nunique()}

    result = stats.bootstrap_subsamples(data, statistic, n_samples=20, sample_size=8, seed=0)
    assert (result.samples["rows"] == 24).all() and (result.samples["subjects"] == 8).all()
    for sample in seen:
        assert (sample.groupby("subject").size() == 3).all()
        base = sample["subject"].str.split("#").str[0]
        offsets = sample["v"].to_numpy() - 3 * base.str[1:].astype(int).to_numpy()
        assert set(offsets) <= {0.0, 1.0, 2.0}  # every row comes with its own subject
    assert math.isnan(result.mean_p)
    with pytest.raises(ValueError, match="without replacement"):
        stats.bootstrap_subsamples(data, statistic, sample_size=11, replace=False)


def _bootstrap_p(data: pd.DataFrame, x: str, y: str, seed: int = 0) -> stats.BootstrapSummary:
    return stats.bootstrap_subsamples(
        data, lambda s: {"r": stats.pearson_correlation(s[x], s[y]).r, "p": stats.pearson_correlation(s[x], s[y]).p},
        n_samples=100, sample_size=50, seed=seed, replace=False,
    )  # fmt: skip


def test_bootstrap_fraction_significant_behaves_as_expected():
    n = 1000
    null_x, null_y = _correlated(n, 0.0, 21)
    strong_x, strong_y = _correlated(n, 0.6, 22)
    frame = pd.DataFrame({"subject": np.arange(n), "a": null_x, "b": null_y, "c": strong_x, "d": strong_y})
    null = _bootstrap_p(frame, "a", "b")
    strong = _bootstrap_p(frame, "c", "d")
    # H0 true: about alpha of the subsamples are significant; strong effect: all of them.
    assert null.fraction_significant <= 0.15 and null.mean_p > 0.3
    assert strong.fraction_significant >= 0.95 and strong.mean_p < 0.01
    assert strong.summary.loc["r", "q2.5"] < 0.6 < strong.summary.loc["r", "q97.5"]
    # Moderate effect (ρ = 0.3, n = 50): power ≈ Φ(atanh(0.3)·√47 − 1.96) ≈ 0.56.
    mid_x, mid_y = _correlated(n, 0.3, 23)
    mid = _bootstrap_p(frame.assign(e=mid_x, f=mid_y), "e", "f")
    assert 0.35 < mid.fraction_significant < 0.8


def test_bootstrap_lr_loses_significance_before_hr():
    c = cohort.simulate_synthetic_cohort(
        n_subjects=300, seed=2, outcomes={"edss": (-0.052, 0.3)}, lr_noise_mm2=(7.0, 7.0, 7.0, 7.0)
    )
    data = stats.pivot_methods(stats.random_resolution_cohort(c.results, seed=0), "mucca_mm2").reset_index()
    data = data.merge(c.clinical, on="subject")

    def stat(method: str):
        return lambda s: {"p": stats.partial_correlation(s, method, "edss", ["age", "sex"]).p}

    hr = stats.bootstrap_subsamples(data, stat("HR"), seed=4)
    lr = stats.bootstrap_subsamples(data, stat("LR"), seed=4)
    assert hr.n_samples == 100 and hr.sample_size == 50 and hr.replace
    assert lr.mean_p > hr.mean_p and lr.fraction_significant < hr.fraction_significant


# ---------------------------------------------------------------------------------------------------------------
# Mixed-effects model and the longitudinal analysis
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def longitudinal_cohort() -> cohort.SyntheticCohort:
    return cohort.simulate_synthetic_longitudinal_cohort(n_subjects=60, seed=5, slope_sd_mm2_per_year=0.3)


def _model_frame(c: cohort.SyntheticCohort) -> pd.DataFrame:
    visits = clinical.load_clinical_table(c.clinical, longitudinal=True)
    joined = clinical.join_clinical(c.results, visits)
    frame = joined[(joined.method == "HR") & (joined.image_type == "T2w_3D") | (joined.method == "SR")]
    frame = stats.add_time_since_first_scan(frame)
    return frame.assign(image_2d=(frame.image_type == "T2w_2D").astype(float))


def test_mixed_model_recovers_planted_atrophy_slope(longitudinal_cohort: cohort.SyntheticCohort):
    frame = _model_frame(longitudinal_cohort)
    assert frame.groupby("subject")["time"].min().eq(0).all()
    fit = stats.fit_mixed_model(frame, stats.atrophy_formula(image_2d=True), confidence=CONFIDENCE)
    truth = longitudinal_cohort.truth
    assert fit.model == "random_slope" and fit.converged and fit.n_groups == 60
    for term in ("time", "image_2d", "sex"):
        row = fit.coef(term)
        planted = truth["image_2d_SR"] if term == "image_2d" else truth[term]
        assert row["ci_low"] < planted < row["ci_high"], term
    assert fit.coef("time")["p"] < 0.05
    assert list(fit.fixed_effects.columns) == ["term", "coef", "se", "z", "p", "ci_low", "ci_high"]


def test_mixed_model_falls_back_and_records_attempts(
    longitudinal_cohort: cohort.SyntheticCohort, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    frame = _model_frame(longitudinal_cohort)
    real = stats._fit_once

    def no_random_slope(formula, data, groups, re_formula, reml, **kwargs):
        if re_formula is not None:
            return None, ["failed: singular random-effects covariance"]
        return real(formula, data, groups, re_formula, reml, **kwargs)

    monkeypatch.setattr(stats, "_fit_once", no_random_slope)
    with caplog.at_level("WARNING"):
        fit = stats.fit_mixed_model(frame, stats.atrophy_formula(image_2d=True))
    assert fit.model == "random_intercept" and fit.converged
    assert [a.split(":")[0] for a in fit.attempts] == ["random_slope", "random_slope_lbfgs_powell", "random_intercept"]
    assert "random_slope_lbfgs_powell failed" in caplog.text
    with pytest.raises(ValueError, match="needs column"):
        stats.fit_mixed_model(frame.drop(columns="age0"))


def test_longitudinal_analysis_corrects_t1w_and_separates_image_type(longitudinal_cohort: cohort.SyntheticCohort):
    visits = clinical.load_clinical_table(longitudinal_cohort.clinical, longitudinal=True)
    result = clinical.longitudinal_analysis(longitudinal_cohort.results, visits, versions=["SR"], image_2d_terms=[True])
    truth = longitudinal_cohort.truth
    assert result.correction is not None
    assert result.correction.delta_ci_low < truth["t1w_offset_mm2"] < result.correction.delta_ci_high
    fit = result.fits[("SR", True)]
    assert fit.coef("time")["ci_low"] < truth["time"] < fit.coef("time")["ci_high"]
    assert fit.coef("image_2d")["ci_low"] < truth["image_2d_SR"] < fit.coef("image_2d")["ci_high"]
    rows = pd.DataFrame(result.rows)
    assert list(rows.columns) == list(clinical.STATS_FIELDS)
    assert {"t1w_correction", "mixed_model"} <= set(rows["analysis"])


def test_longitudinal_cli_writes_tables(longitudinal_cohort: cohort.SyntheticCohort, tmp_path: Path, capsys):
    from mrisr.cli.longitudinal import main

    table, visits = tmp_path / "per_image.csv", tmp_path / "visits.tsv"
    longitudinal_cohort.results.to_csv(table, index=False)
    longitudinal_cohort.clinical.rename(columns={"subject": "id"}).to_csv(visits, index=False, sep="\t")
    args = [f"table={table}", f"clinical={visits}", f"output={tmp_path / 'out'}", "rename={id: subject}"]
    assert main([*args, "versions=[SR]", "image_2d_terms=[true]"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["models"] == {"SR+image_2d": "random_slope"}
    assert summary["time_coef"]["SR+image_2d"] == pytest.approx(-0.8, abs=0.4)
    markdown = (tmp_path / "out" / "longitudinal.md").read_text()
    assert "Time (from first scan, years)" in markdown and "Image type (2-D)" in markdown
    assert "mixed_model" in (tmp_path / "out" / "longitudinal_stats.csv").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Clinical tables and the callback
# ---------------------------------------------------------------------------------------------------------------


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "clinical.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return path


def test_clinical_table_errors_name_the_columns(tmp_path: Path):
    base = pd.DataFrame({"subject": ["a", "b"], "age": [40, 50], "sex": ["F", "M"], "edss": [2.0, ""]})
    with pytest.raises(MrisrInputError, match="'edss', 't25fw'"):
        clinical.load_clinical_table(_write(tmp_path, base.drop(columns="edss")), outcomes=["edss", "t25fw"])
    with pytest.raises(MrisrInputError, match=r"'age' has non-numeric values.*'forty'"):
        clinical.load_clinical_table(_write(tmp_path, base.assign(age=["forty", 50])))
    with pytest.raises(MrisrInputError, match="'sex' has values 'X'"):
        clinical.load_clinical_table(_write(tmp_path, base.assign(sex=["X", "M"])))
    with pytest.raises(MrisrInputError, match="'session', 'scan_date', 'image_type'"):
        clinical.load_clinical_table(_write(tmp_path, base), longitudinal=True)
    with pytest.raises(MrisrInputError, match="duplicate rows"):
        clinical.load_clinical_table(_write(tmp_path, pd.concat([base, base])))
    with pytest.raises(MrisrInputError, match="does not exist"):
        clinical.load_clinical_table(tmp_path / "missing.csv")
    visits = base.assign(session=["a1", "b1"], scan_date=["2020-01-01", "2021-02-30"], image_type="T2w_3D")
    with pytest.raises(MrisrInputError, match="scan_date"):
        clinical.load_clinical_table(_write(tmp_path, visits), longitudinal=True)
    bad_type = visits.assign(scan_date="2020-01-01", image_type="T2_axial")
    with pytest.raises(MrisrInputError, match=r"image_type.*'T2_axial'"):
        clinical.load_clinical_table(_write(tmp_path, bad_type), longitudinal=True)
    with pytest.raises(MrisrInputError, match="'value'"):
        clinical.load_results(_write(tmp_path, pd.DataFrame({"subject": ["a"], "method": ["SR"], "metric": ["m"]})))


def test_clinical_table_loads_tsv_with_renamed_columns(tmp_path: Path):
    frame = pd.DataFrame(
        {"id": ["a", "b", "c"], "age": [40, 50, 61.5], "sex": ["female", "M", "1"], "edss": [2, "", 4]}
    )
    loaded = clinical.load_clinical_table(_write(tmp_path, frame, "c.tsv"), ["edss"], rename={"id": "subject"})
    assert loaded["sex"].tolist() == [0, 1, 1] and loaded["age"].tolist() == [40, 50, 61.5]
    assert np.isnan(loaded["edss"][1]) and loaded["subject"].tolist() == ["a", "b", "c"]


def test_join_clinical_requires_common_subjects(synthetic: cohort.SyntheticCohort):
    other = synthetic.clinical.assign(subject=lambda d: "x" + d.subject)
    with pytest.raises(MrisrInputError, match="no result row matches"):
        clinical.join_clinical(synthetic.results, other)
    joined = clinical.join_clinical(synthetic.results, synthetic.clinical.iloc[:10])
    assert joined["subject"].nunique() == 10


def test_clinical_correlation_rows_cover_the_analyses():
    c = cohort.simulate_synthetic_cohort(n_subjects=120, seed=9)
    rows = pd.DataFrame(clinical.clinical_correlation_rows(c.results, c.clinical, ["edss"], bootstrap_samples=20))
    assert list(rows.columns) == list(clinical.STATS_FIELDS)
    assert set(rows["setting"]) == {*cohort.DEWEY_SETTINGS, "random"}
    assert {"partial_correlation", "regression", "williams", "bootstrap"} == set(rows["analysis"])
    williams = rows[rows.analysis == "williams"]
    assert set(williams["method"]) == {"LR", "SR"} and set(williams["reference"]) == {"HR"}
    assert set(rows.loc[rows.analysis == "bootstrap", "setting"]) == {"random"}
    hr_r = rows.query(
        "analysis == 'partial_correlation' and method == 'HR' and statistic == 'r' and setting == 'random'"
    )
    assert hr_r["value"].iloc[0] < 0 and hr_r["n"].iloc[0] == 120


def test_clinical_callback_reads_run_tables_and_writes_rows(tmp_path: Path):
    from mrisr.callbacks.clinical import ClinicalCorrelationCallback

    c = cohort.simulate_synthetic_cohort(n_subjects=60, seed=4)
    c.results.to_csv(tmp_path / "test_metrics.csv", index=False)
    path = _write(tmp_path, c.clinical.rename(columns={"edss": "EDSS"}), "subjects.csv")
    trainer = SimpleNamespace(is_global_zero=True)
    callback = ClinicalCorrelationCallback(
        str(tmp_path), str(path), outcomes=["EDSS"], bootstrap_samples=10, bootstrap_size=30
    )
    callback.setup(trainer, None, "test")
    callback.on_test_end(trainer, None)
    written = pd.read_csv(tmp_path / "clinical_stats.csv")
    assert list(written.columns) == list(clinical.STATS_FIELDS)
    assert {"williams", "bootstrap"} <= set(written["analysis"]) and set(written["outcome"]) == {"EDSS"}
    with pytest.raises(MrisrInputError, match="clinical_path"):
        ClinicalCorrelationCallback(str(tmp_path), None).setup(trainer, None, "fit")
    with pytest.raises(MrisrInputError, match="'msfc'"):
        ClinicalCorrelationCallback(str(tmp_path), str(path), outcomes=["EDSS", "msfc"]).setup(trainer, None, "test")


def test_ols_fit_band_matches_statsmodels_prediction_interval_of_the_mean(synthetic: cohort.SyntheticCohort):
    wide = stats.pivot_methods(synthetic.results, "mucca_mm2", "3||0.0")
    x, y = wide["HR"].to_numpy(), wide["LR"].to_numpy()
    grid = np.linspace(x.min() - 5.0, x.max() + 5.0, 23)
    ours = stats.ols_fit_band(x, y, grid, confidence=CONFIDENCE)
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    prediction = fit.get_prediction(sm.add_constant(grid))
    limits = prediction.conf_int(alpha=1 - CONFIDENCE)
    assert (ours.intercept, ours.slope) == pytest.approx(tuple(fit.params), rel=1e-9)
    np.testing.assert_allclose(ours.fit, prediction.predicted_mean, rtol=1e-10)
    np.testing.assert_allclose(ours.low, limits[:, 0], rtol=1e-10)
    np.testing.assert_allclose(ours.high, limits[:, 1], rtol=1e-10)
    assert ours.n == len(x)
    # Narrowest at the mean of x, widening symmetrically: half-width ∝ √(1/n + (x₀ − x̄)²/Sxx).
    centre = stats.ols_fit_band(x, y, [x.mean() - 3.0, x.mean(), x.mean() + 3.0])
    width = centre.high - centre.low
    assert width[1] < width[0] and width[0] == pytest.approx(width[2])


def test_ols_fit_band_hand_computed_and_rejects_degenerate_input():
    # x = [0, 1, 2, 3], y = [1, 3, 2, 5]: b = 1.1, a = 1.1; residuals [-0.1, 0.8, -1.3, 0.6], RSS = 2.7, s² = 1.35.
    band = stats.ols_fit_band([0.0, 1.0, 2.0, 3.0, math.nan], [1.0, 3.0, 2.0, 5.0, 9.0], [1.5, 4.0])
    assert (band.intercept, band.slope, band.n) == pytest.approx((1.1, 1.1, 4))
    half = sps.t.ppf(0.975, 2) * math.sqrt(1.35) * np.sqrt(0.25 + (np.array([1.5, 4.0]) - 1.5) ** 2 / 5.0)
    np.testing.assert_allclose(band.fit, [2.75, 5.5])
    np.testing.assert_allclose(band.high - band.fit, half)
    np.testing.assert_allclose(band.fit - band.low, half)
    with pytest.raises(ValueError, match="constant"):
        stats.ols_fit_band([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], [2.0])
    with pytest.raises(ValueError, match="at least 3"):
        stats.ols_fit_band([1.0, 2.0], [1.0, 2.0], [1.5])
