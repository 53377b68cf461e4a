"""Clinical tables: loading and validation, joining to per-image results, and the Dewey et al. analyses as tidy rows.

Clinical table (CSV, or TSV for ``.tsv``/``.tab``), one row per subject (cross-sectional) or per image/visit
(longitudinal):

=============== =========================================================================================
column          content
=============== =========================================================================================
``subject``     subject id, matching ``subject`` of the per-image results
``age``         years (at the visit for longitudinal tables)
``sex``         ``0``/``1`` (1 = male) or ``F``/``M``/``female``/``male`` (case-insensitive)
outcomes        one numeric column per clinical outcome (e.g. ``edss``, ``t25fw``, ``nhpt``); empty = missing
``session``     longitudinal: image/visit id matching ``session`` of the per-image results
``scan_date``   longitudinal: ISO date (``YYYY-MM-DD``) of the scan
``image_type``  longitudinal: one of :data:`IMAGE_TYPES` (``T2w_2D``, ``T2w_3D``, ``T1w_3D``, ``T1w_2D``)
=============== =========================================================================================

Other names are mapped with ``rename`` (e.g. ``{"id": "subject"}``). Problems raise
:class:`~mrisr.core.errors.MrisrInputError` naming the file, the column(s) and the fix.

Per-image results are the tidy rows of the evaluation callbacks: ``subject, [session,] setting, method, metric,
value`` (extra columns are kept). Statistic rows written here have the columns :data:`STATS_FIELDS`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrisr.core.errors import MrisrInputError
from mrisr.eval import stats

__all__ = [
    "IMAGE_TYPES",
    "RESULT_COLUMNS",
    "STATS_FIELDS",
    "LongitudinalResult",
    "clinical_correlation_rows",
    "join_clinical",
    "load_clinical_table",
    "load_results",
    "longitudinal_analysis",
    "read_table",
    "result_rows",
]

log = logging.getLogger(__name__)

#: Columns every tidy per-image result table must have.
RESULT_COLUMNS: tuple[str, ...] = ("subject", "method", "metric", "value")

#: Columns of the tidy statistic rows (one number per row).
STATS_FIELDS: tuple[str, ...] = (
    "analysis",
    "metric",
    "method",
    "reference",
    "setting",
    "outcome",
    "term",
    "statistic",
    "value",
    "n",
)

#: Accepted ``image_type`` values: contrast and acquisition dimensionality.
IMAGE_TYPES: Mapping[str, tuple[str, str]] = {
    "T2w_2D": ("T2w", "2D"),
    "T2w_3D": ("T2w", "3D"),
    "T1w_3D": ("T1w", "3D"),
    "T1w_2D": ("T1w", "2D"),
}

_SEX_CODES = {"0": 0, "1": 1, "f": 0, "m": 1, "female": 0, "male": 1, "0.0": 0, "1.0": 1}

PathOrFrame = str | os.PathLike[str] | pd.DataFrame


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV (or TSV for ``.tsv``/``.tab``) file with every column as text.

    Raises:
        MrisrInputError: missing, unreadable or empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise MrisrInputError(path, "file does not exist", "check the path")
    sep = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MrisrInputError(
            path, f"not a readable {'TSV' if sep == chr(9) else 'CSV'} table ({err})", "fix the file"
        ) from err
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise MrisrInputError(path, "table has no rows", "add one row per subject (or per image)")
    return frame


def _source(data: PathOrFrame) -> tuple[pd.DataFrame, str | None]:
    if isinstance(data, pd.DataFrame):
        return data.copy(), None
    return read_table(data), os.fspath(data)


def _require_columns(frame: pd.DataFrame, required: Sequence[str], path: str | None, what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MrisrInputError(
            path,
            f"{what} lacks column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(map(str, frame.columns))})",
            "add the column(s), or map existing names onto them with rename (e.g. rename={id: subject})",
        )


def _numeric_column(frame: pd.DataFrame, column: str, path: str | None) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        examples = ", ".join(repr(v) for v in raw[bad].astype(str).unique()[:3])
        raise MrisrInputError(
            path,
            f"column {column!r} has non-numeric values ({examples}; rows {list(np.flatnonzero(bad)[:5] + 1)})",
            f"write numbers in {column!r} and leave missing values empty",
        )
    return values.astype(float)


def load_clinical_table(
    data: PathOrFrame,
    outcomes: Sequence[str] = (),
    longitudinal: bool = False,
    rename: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Load and validate a clinical table (see the module docstring for the columns).

    Args:
        data: path of a CSV/TSV file, or a frame.
        outcomes: outcome columns that must be present (numeric; empty cells are missing values).
        longitudinal: also require ``session``, ``scan_date`` and ``image_type`` (one row per image).
        rename: user column name → canonical name, applied first.

    Returns:
        A frame with ``subject``/``session`` as text, ``age`` and outcomes as float, ``sex`` as 0/1 integers,
        ``scan_date`` as datetime.

    Raises:
        MrisrInputError: missing columns (all named), malformed values (column and rows named), unknown image types,
            missing subject ids or duplicate subjects (sessions).
    """
    frame, path = _source(data)
    if rename:
        frame = frame.rename(columns=dict(rename))
    required = ["subject", "age", "sex", *outcomes]
    if longitudinal:
        required += ["session", "scan_date", "image_type"]
    _require_columns(frame, required, path, "clinical table")

    frame["subject"] = frame["subject"].astype("string").str.strip()
    if frame["subject"].isna().any() or (frame["subject"] == "").any():
        raise MrisrInputError(path, "column 'subject' has empty ids", "give every row a subject id")
    frame["age"] = _numeric_column(frame, "age", path)
    for column in outcomes:
        frame[column] = _numeric_column(frame, column, path)
    sex_text = frame["sex"].astype("string").str.strip().str.lower()
    sex = sex_text.map(_SEX_CODES)
    bad = sex.isna() & sex_text.notna() & (sex_text != "")
    if bad.any():
        examples = ", ".join(repr(v) for v in frame.loc[bad, "sex"].astype(str).unique()[:3])
        raise MrisrInputError(path, f"column 'sex' has values {examples}", "use 0/1 (1 = male) or F/M")
    frame["sex"] = sex.astype("Float64").astype(float)
    frame["subject"] = frame["subject"].astype(str)

    keys = ["subject"]
    if longitudinal:
        frame["session"] = frame["session"].astype(str).str.strip()
        dates = pd.to_datetime(frame["scan_date"], errors="coerce", format="mixed")
        bad = dates.isna()
        if bad.any():
            examples = ", ".join(repr(v) for v in frame.loc[bad, "scan_date"].astype(str).unique()[:3])
            raise MrisrInputError(path, f"column 'scan_date' has unreadable dates ({examples})", "write YYYY-MM-DD")
        frame["scan_date"] = dates
        frame["image_type"] = frame["image_type"].astype(str).str.strip()
        unknown = sorted(set(frame["image_type"]) - set(IMAGE_TYPES))
        if unknown:
            raise MrisrInputError(
                path, f"column 'image_type' has unknown values {unknown}", f"use one of {sorted(IMAGE_TYPES)}"
            )
        keys = ["subject", "session"]
    elif "session" in frame.columns:
        frame["session"] = frame["session"].astype(str).str.strip()
        keys = ["subject", "session"]
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        examples = frame.loc[dup, keys].drop_duplicates().head(3).to_dict("records")
        raise MrisrInputError(
            path, f"duplicate rows for {keys} (e.g. {examples})", f"keep one row per {' and '.join(keys)}"
        )
    return frame


def load_results(sources: PathOrFrame | Iterable[PathOrFrame]) -> pd.DataFrame:
    """Load tidy per-image result tables (CSV files or frames) and concatenate them.

    Args:
        sources: one or several paths or frames with at least :data:`RESULT_COLUMNS`.

    Returns:
        The concatenated rows, ``value`` as float, ``subject``/``method``/``metric`` (and ``setting``, ``session``
        when present) as text.

    Raises:
        MrisrInputError: a missing column (named) or a non-numeric value.
    """
    if isinstance(sources, (str, os.PathLike, pd.DataFrame)):
        sources = [sources]
    frames = []
    for source in sources:
        frame, path = _source(source)
        _require_columns(frame, RESULT_COLUMNS, path, "results table")
        for column in ("subject", "method", "metric", "setting", "session"):
            if column in frame.columns:
                frame[column] = frame[column].fillna("").astype(str).str.strip()
        frame["value"] = _numeric_column(frame, "value", path)
        frames.append(frame)
    if not frames:
        raise MrisrInputError(None, "no result tables given", "pass at least one tidy CSV")
    return pd.concat(frames, ignore_index=True)


def join_clinical(results: pd.DataFrame, clinical: pd.DataFrame, path: str | None = None) -> pd.DataFrame:
    """Inner-join per-image result rows with clinical rows on ``subject`` (and ``session`` when both have one).

    Result subjects absent from the clinical table are dropped with a warning naming a few of them.

    Raises:
        MrisrInputError: no subject in common.
    """
    keys = ["subject", "session"] if "session" in results.columns and "session" in clinical.columns else ["subject"]
    clinical_cols = [c for c in clinical.columns if c not in results.columns or c in keys]
    joined = results.merge(clinical[clinical_cols], on=keys, how="inner", validate="many_to_one")
    if joined.empty:
        ours = sorted(results["subject"].astype(str).unique())[:3]
        theirs = sorted(clinical["subject"].astype(str).unique())[:3]
        raise MrisrInputError(
            path,
            f"no result row matches the clinical table on {keys} (results: {ours}…, clinical: {theirs}…)",
            "use the same subject (and session) ids in both tables",
        )
    lost = sorted(set(results["subject"].astype(str)) - set(joined["subject"].astype(str)))
    if lost:
        log.warning("%d subject(s) without clinical data are left out: %s", len(lost), lost[:5])
    return joined


def result_rows(result: Any, prefix: str = "", **keys: Any) -> list[dict[str, Any]]:
    """Tidy rows (:data:`STATS_FIELDS`) from a statistics dataclass: one row per numeric field except ``n``.

    Args:
        result: a frozen dataclass from :mod:`mrisr.eval.stats` (with an ``n`` field, else ``n`` is left empty).
        prefix: prepended to each statistic name (e.g. ``"bootstrap_"``).
        **keys: the identifying columns (``analysis``, ``metric``, ``method``…); missing ones are empty.
    """
    values = dataclasses.asdict(result)
    n = values.get("n", "")
    base = {name: keys.get(name, "") for name in STATS_FIELDS}
    rows = []
    for name, value in values.items():
        if name == "n" or isinstance(value, (str, dict, list, tuple)) or value is None:
            continue
        rows.append({**base, "statistic": prefix + name, "value": float(value), "n": n})
    return rows


def _settings_of(results: pd.DataFrame) -> list[str]:
    return sorted(results["setting"].astype(str).unique()) if "setting" in results.columns else [""]


def clinical_correlation_rows(
    results: pd.DataFrame,
    clinical: pd.DataFrame,
    outcomes: Sequence[str],
    metric: str = "mucca_mm2",
    reference: str = "HR",
    methods: Sequence[str] | None = None,
    covariates: Sequence[str] = ("age", "sex"),
    correlation: stats.CorrelationMethod = "pearson",
    transforms: Mapping[str, stats.OutcomeTransform] | None = None,
    random_resolution: bool = True,
    bootstrap_samples: int = 100,
    bootstrap_size: int = 50,
    bootstrap_replace: bool = True,
    bootstrap_settings: Sequence[str] | None = None,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Dewey et al.'s clinical analysis of one metric, as tidy rows (:data:`STATS_FIELDS`).

    Per setting (plus the ``random`` simulated real-world cohort of :func:`~mrisr.eval.stats.random_resolution_cohort`
    when there are several settings and ``random_resolution``), per outcome and per method:

    * ``partial_correlation``: r, t, df, p, Fisher CI adjusted for ``covariates``;
    * ``regression``: outcome ~ metric + covariates, the metric's slope with CI and p;
    * ``williams`` (non-reference methods): Williams' test of r(outcome, reference) vs r(outcome, method) with
      n_eff = n − k, and the partial correlation between reference and method;
    * ``bootstrap``: mean, SD, 2.5/97.5 % of r, mean p and fraction p < ``alpha`` over subject subsamples.

    Args:
        results: tidy per-image rows (``subject, setting, method, metric, value``).
        clinical: validated clinical table (:func:`load_clinical_table`).
        outcomes: outcome columns.
        metric: metric analysed (e.g. ``mucca_mm2``).
        reference: method of the reference measurement for Williams' test (``HR``); absent → no Williams rows.
        methods: methods analysed (default: all methods of the metric).
        covariates: adjustment columns.
        correlation: ``pearson`` or ``spearman``.
        transforms: outcome → transform of the regression (``none``, ``log``, ``inverse``).
        random_resolution: add the randomised-resolution cohort.
        bootstrap_samples: number of subsamples (0 disables the bootstrap).
        bootstrap_size: subjects per subsample.
        bootstrap_replace: draw subjects with replacement.
        bootstrap_settings: cohorts bootstrapped (default: ``random`` when it exists, as in Dewey et al., else all).
        seed: seed of the resolution draw and of the bootstrap.
        alpha: significance level of the bootstrap summary.

    Returns:
        The statistic rows; empty when the metric is absent.
    """
    sel = results[results["metric"] == metric]
    if sel.empty:
        log.warning("clinical correlations: no %r rows in the results", metric)
        return []
    if "setting" not in sel.columns:
        sel = sel.assign(setting="")
    all_methods = sorted(sel["method"].unique()) if methods is None else list(methods)
    settings = _settings_of(sel)
    cohorts = {s: sel[sel["setting"].astype(str) == s] for s in settings}
    if random_resolution and len(settings) > 1:
        cohorts["random"] = stats.random_resolution_cohort(sel, settings=settings, seed=seed)
    transforms = dict(transforms or {})
    if bootstrap_settings is None:
        bootstrap_settings = ["random"] if "random" in cohorts else list(cohorts)
    rows: list[dict[str, Any]] = []
    for setting, cohort in cohorts.items():
        wide = stats.pivot_methods(cohort, metric).reset_index()
        wide["subject"] = wide["subject"].astype(str)
        data = wide.merge(clinical, on="subject", how="inner")
        for outcome in outcomes:
            for method in all_methods:
                if method not in data.columns:
                    continue
                key = {"metric": metric, "method": method, "setting": setting, "outcome": outcome}
                try:
                    corr = stats.partial_correlation(data, method, outcome, covariates, method=correlation)
                    rows += result_rows(corr, analysis="partial_correlation", **key)
                    slope = stats.regression_slope(data, outcome, method, covariates, transforms.get(outcome, "none"))
                    rows += result_rows(slope, analysis="regression", **key)
                except ValueError as err:
                    log.warning("clinical correlation %s/%s/%s skipped: %s", setting, outcome, method, err)
                    continue
                if method != reference and reference in data.columns:
                    try:
                        dep = stats.dependent_correlation_test(
                            data, outcome, reference, method, covariates, method=correlation
                        )
                    except ValueError as err:
                        log.warning("Williams' test %s/%s/%s skipped: %s", setting, outcome, method, err)
                    else:
                        w = {**key, "reference": reference}
                        rows += result_rows(dep.williams, analysis="williams", **w)
                        rows += result_rows(dep.between, prefix="between_", analysis="williams", **w)
                if bootstrap_samples > 0 and setting in bootstrap_settings:
                    boot = _bootstrap_correlation(
                        data, method, outcome, covariates, correlation, bootstrap_samples, bootstrap_size,
                        bootstrap_replace, seed, alpha,
                    )  # fmt: skip
                    for stat_name, summary in boot.summary.iterrows():
                        for col in ("mean", "sd", "q2.5", "q97.5"):
                            rows.append(
                                {**_blank(), **key, "analysis": "bootstrap", "statistic": f"{stat_name}_{col}",
                                 "value": float(summary[col]), "n": bootstrap_size}
                            )  # fmt: skip
                    rows.append({**_blank(), **key, "analysis": "bootstrap", "statistic": "mean_p",
                                 "value": boot.mean_p, "n": bootstrap_size})  # fmt: skip
                    rows.append({**_blank(), **key, "analysis": "bootstrap", "statistic": "fraction_significant",
                                 "value": boot.fraction_significant, "n": bootstrap_size})  # fmt: skip
    return rows


def _blank() -> dict[str, Any]:
    return dict.fromkeys(STATS_FIELDS, "")


def _bootstrap_correlation(
    data: pd.DataFrame,
    x: str,
    y: str,
    covariates: Sequence[str],
    correlation: stats.CorrelationMethod,
    n_samples: int,
    size: int,
    replace: bool,
    seed: int,
    alpha: float,
) -> stats.BootstrapSummary:
    frame = data[["subject", x, y, *covariates]].dropna()
    n_subjects = frame["subject"].nunique()
    if not replace and size > n_subjects:
        log.warning("bootstrap: %d subjects available, subsamples of %d drawn with replacement", n_subjects, size)
        replace = True

    def statistic(sample: pd.DataFrame) -> dict[str, float]:
        c = stats.partial_correlation(sample, x, y, covariates, method=correlation)
        return {"r": c.r, "p": c.p}

    return stats.bootstrap_subsamples(frame, statistic, n_samples, size, replace=replace, seed=seed, alpha=alpha)


# ---------------------------------------------------------------------------------------------------------------
# Longitudinal analysis
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LongitudinalResult:
    """Output of :func:`longitudinal_analysis`.

    Attributes:
        rows: tidy statistic rows (:data:`STATS_FIELDS`).
        fits: ``(version, with_image_2d)`` → :class:`~mrisr.eval.stats.MixedModelFit`.
        correction: the T1w → T2w correction used (None when there are no T1w images).
        data: ``version`` → the model frame (one row per image).
    """

    rows: list[dict[str, Any]]
    fits: dict[tuple[str, bool], stats.MixedModelFit]
    correction: stats.T1wCorrection | None
    data: dict[str, pd.DataFrame]


def longitudinal_analysis(
    results: pd.DataFrame,
    visits: pd.DataFrame,
    metric: str = "mucca_mm2",
    versions: Sequence[str] = ("LR", "SR"),
    native: str = "HR",
    t1w_delta_mm2: float | None = None,
    image_2d_terms: Sequence[bool] = (False, True),
    path: str | None = None,
) -> LongitudinalResult:
    """Dewey et al.'s longitudinal atrophy model, once per version of the 2-D images (Tables 1 and 2).

    Each image contributes one value: for 2-D images the ``version`` method (LR or SR), for 3-D images the
    ``native`` (acquired) value. T1w values get the additive T1w → T2w correction: ``t1w_delta_mm2`` when given,
    else δ estimated from same-subject, same-date pairs of T1w and T2w 3-D images
    (:func:`~mrisr.eval.stats.t1w_to_t2w_correction`).
    The model is :func:`~mrisr.eval.stats.fit_mixed_model` with ``value ~ sex + age0 + time + age0:time``
    (``+ image_2d`` when requested), time in years since the first scan.

    Args:
        results: tidy per-image rows with ``subject``, ``session``, ``method``, ``metric``, ``value``.
        visits: validated longitudinal clinical table (``load_clinical_table(..., longitudinal=True)``).
        metric: metric modelled.
        versions: methods used for 2-D images, one model each.
        native: method of acquired 3-D images.
        t1w_delta_mm2: fixed T1w correction (mm²); None → estimate it.
        image_2d_terms: fit without and/or with the 2-D image-type term.
        path: clinical file name for error messages.

    Returns:
        The :class:`LongitudinalResult`.

    Raises:
        MrisrInputError: no ``session`` column in the results, no usable rows, or T1w images without a way to correct
            them.
    """
    if "session" not in results.columns:
        raise MrisrInputError(
            None, "per-image results lack a 'session' column", "add session ids matching the visits table"
        )
    sel = results[results["metric"] == metric]
    if sel.empty:
        raise MrisrInputError(None, f"per-image results have no {metric!r} rows", "choose metric= among the table's")
    joined = join_clinical(sel, visits, path)
    kind = joined["image_type"].map(lambda t: IMAGE_TYPES[t])
    joined["contrast"] = kind.map(lambda k: k[0])
    joined["image_2d"] = (kind.map(lambda k: k[1]) == "2D").astype(float)

    correction = None
    is_t1 = joined["contrast"] == "T1w"
    if is_t1.any():
        if t1w_delta_mm2 is None:
            native_rows = joined[joined["method"] == native]
            t1 = native_rows[native_rows["contrast"] == "T1w"]
            t2 = native_rows[(native_rows["contrast"] == "T2w") & (native_rows["image_2d"] == 0)]
            pairs = t1.merge(t2, on=["subject", "scan_date"], suffixes=("_t1", "_t2"))
            if len(pairs) < 3:
                raise MrisrInputError(
                    path,
                    f"{int(is_t1.sum())} T1w rows but only {len(pairs)} same-day T1w/T2w 3-D pairs to estimate the "
                    "T1w correction",
                    "give t1w_delta_mm2=<T2w - T1w offset in mm²> or add paired sessions",
                )
            correction = stats.t1w_to_t2w_correction(pairs["value_t1"], pairs["value_t2"])
            delta = correction.delta
        else:
            delta = float(t1w_delta_mm2)
        joined.loc[is_t1, "value"] = joined.loc[is_t1, "value"] + delta
    rows: list[dict[str, Any]] = []
    if correction is not None:
        rows += result_rows(correction, analysis="t1w_correction", metric=metric, method=native)
    elif is_t1.any():
        rows.append({**_blank(), "analysis": "t1w_correction", "metric": metric, "method": native,
                     "statistic": "delta", "value": float(t1w_delta_mm2), "n": ""})  # fmt: skip

    fits: dict[tuple[str, bool], stats.MixedModelFit] = {}
    frames: dict[str, pd.DataFrame] = {}
    for version in versions:
        choose = np.where(joined["image_2d"] == 1, version, native)
        frame = joined[joined["method"] == choose].copy()
        if frame.empty:
            log.warning("longitudinal: no rows for version %s", version)
            continue
        frame = stats.add_time_since_first_scan(frame)
        frames[version] = frame
        for with_2d in image_2d_terms:
            if with_2d and frame["image_2d"].nunique() < 2:
                log.warning("longitudinal %s: only one image dimensionality, image_2d term skipped", version)
                continue
            fit = stats.fit_mixed_model(frame, stats.atrophy_formula(image_2d=with_2d))
            fits[(version, with_2d)] = fit
            setting = "with_image_2d" if with_2d else "without_image_2d"
            for record in fit.fixed_effects.to_dict("records"):
                for stat_name in ("coef", "se", "z", "p", "ci_low", "ci_high"):
                    rows.append({**_blank(), "analysis": "mixed_model", "metric": metric, "method": version,
                                 "setting": setting, "term": record["term"], "statistic": stat_name,
                                 "value": float(record[stat_name]), "n": fit.n_obs})  # fmt: skip
            rows.append({**_blank(), "analysis": "mixed_model", "metric": metric, "method": version,
                         "setting": setting, "term": fit.model, "statistic": "converged",
                         "value": float(fit.converged), "n": fit.n_groups})  # fmt: skip
    if not fits:
        raise MrisrInputError(path, "no mixed model could be fitted", "check the versions and methods in the results")
    return LongitudinalResult(rows, fits, correction, frames)
