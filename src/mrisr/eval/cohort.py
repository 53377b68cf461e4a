"""SYNTHETIC cohorts with planted effects, for testing the statistics of :mod:`mrisr.eval.stats`.

Nothing here is data: every value is drawn from a seeded generative model whose parameters are returned beside the
tables (``truth``), so tests can check that the statistics recover them. Subject ids start with ``synthetic-`` and
every table carries ``backend = "mrisr.eval.cohort (synthetic)"``.

Cross-sectional model (one HR/LR/SR MUCCA per subject and simulated resolution, as in Dewey et al.):

* age ~ U(25, 70) years, sex ~ Bernoulli(0.5) (1 = male);
* HR MUCCA = μ + β_sex·sex + β_age·(age − 45) + e, e ~ N(0, σ_m²);
* outcome_o = c_o + b_o·HR + a_o·(age − 45) + ε_o with σ_ε = |b_o|·σ_m·√(1/ρ_o² − 1), so the population partial
  correlation of HR MUCCA and outcome_o given (age, sex) is sign(b_o)·ρ_o and its adjusted slope is b_o;
* SR = HR + N(0, σ_SR,s²); LR = HR + bias_LR + k_LR·(HR − μ) + N(0, σ_LR,s²) per setting s (LR over-segments,
  increasingly with cord area);
* PSNR/SSIM of LR (cubic) and SR per setting, SR better by a planted margin.

Longitudinal model (one row per image; Dewey et al., Tables 1–2):

* MUCCA_it = μ + β_sex·sex + β_age·(age0 − 45) + (β_time + β_age×time·(age0 − 45))·t + b_0i + b_1i·t + ε_it,
  b_0i ~ N(0, τ₀²), b_1i ~ N(0, τ₁²), ε ~ N(0, σ²);
* image types T2w_2D (LR value + bias_2D,LR; SR value + bias_2D,SR), T2w_3D (acquired HR) and T1w_3D (acquired, offset
  by −δ_T1, corrected by the additive T1w → T2w correction); a fraction of T2w_3D sessions has a same-day T1w_3D
  image, which is what the correction is estimated from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "DEWEY_SETTINGS",
    "SYNTHETIC_BACKEND",
    "SyntheticCohort",
    "simulate_synthetic_cohort",
    "simulate_synthetic_longitudinal_cohort",
]

#: Backend label of every synthetic row.
SYNTHETIC_BACKEND = "mrisr.eval.cohort (synthetic)"

#: The four simulated resolutions of Dewey et al. (thickness 3 mm ‖ gap in mm).
DEWEY_SETTINGS: tuple[str, ...] = ("3||0.0", "3||0.3", "3||0.5", "3||1.0")

#: Planted outcome effects: name → (adjusted slope per mm² of HR MUCCA, population partial correlation magnitude).
DEFAULT_OUTCOMES: Mapping[str, tuple[float, float]] = {
    "edss": (-0.052, 0.30),
    "t25fw": (-0.014, 0.27),
    "9hpt": (-0.394, 0.38),
}


@dataclass(frozen=True)
class SyntheticCohort:
    """A SYNTHETIC cohort: tidy per-image results, a clinical table and the planted parameters.

    Attributes:
        results: tidy rows ``subject, session, setting, method, metric, value, backend``.
        clinical: one row per subject (cross-sectional) or per image (longitudinal) with ``subject``, ``age``,
            ``sex`` and outcomes or ``session``, ``scan_date``, ``image_type``.
        truth: the planted parameters (see the simulators).
    """

    results: pd.DataFrame
    clinical: pd.DataFrame
    truth: dict[str, object] = field(default_factory=dict)


def _subject_ids(n: int) -> list[str]:
    return [f"synthetic-{i:04d}" for i in range(n)]


def simulate_synthetic_cohort(
    n_subjects: int = 200,
    seed: int = 0,
    settings: Sequence[str] = DEWEY_SETTINGS,
    mucca_mean_mm2: float = 75.0,
    mucca_sd_mm2: float = 7.0,
    sex_effect_mm2: float = 3.0,
    age_effect_mm2_per_year: float = -0.1,
    outcomes: Mapping[str, tuple[float, float]] = DEFAULT_OUTCOMES,
    sr_noise_mm2: Sequence[float] = (1.0, 1.2, 1.4, 1.8),
    lr_bias_mm2: float = 4.0,
    lr_excess_slope: float = 0.15,
    lr_noise_mm2: Sequence[float] = (3.0, 3.5, 4.0, 4.5),
    psnr_sr_db: float = 36.0,
    psnr_margin_db: float = 2.0,
) -> SyntheticCohort:
    """Draw a SYNTHETIC cross-sectional cohort with planted MUCCA–outcome correlations and an LR bias.

    Args:
        n_subjects: number of subjects.
        seed: seed of :func:`numpy.random.default_rng`.
        settings: simulated resolutions (one LR and one SR value each; HR repeated per setting).
        mucca_mean_mm2: μ, mean HR MUCCA (mm²).
        mucca_sd_mm2: σ_m, SD of HR MUCCA given age and sex (mm²).
        sex_effect_mm2: β_sex (male − female, mm²).
        age_effect_mm2_per_year: β_age (mm² per year).
        outcomes: outcome name → (adjusted slope b_o, partial correlation magnitude ρ_o in (0, 1)).
        sr_noise_mm2: σ_SR per setting.
        lr_bias_mm2: bias_LR at the mean cord area (mm²).
        lr_excess_slope: k_LR, LR over-segmentation growing with cord area.
        lr_noise_mm2: σ_LR per setting.
        psnr_sr_db: mean SR PSNR at the first setting (dB); decreases by 1 dB per setting.
        psnr_margin_db: planted SR − LR PSNR difference (dB).

    Returns:
        The :class:`SyntheticCohort`; ``truth`` holds ``outcomes`` (slope, partial r with sign), ``lr_bias_mm2``,
        ``lr_excess_slope``, ``psnr_margin_db`` and ``mucca_sd_mm2``.
    """
    if len(sr_noise_mm2) != len(settings) or len(lr_noise_mm2) != len(settings):
        raise ValueError("sr_noise_mm2 and lr_noise_mm2 need one value per setting")
    rng = np.random.default_rng(seed)
    subjects = _subject_ids(n_subjects)
    age = rng.uniform(25.0, 70.0, n_subjects)
    sex = rng.integers(0, 2, n_subjects)
    hr = (
        mucca_mean_mm2
        + sex_effect_mm2 * sex
        + age_effect_mm2_per_year * (age - 45.0)
        + rng.normal(0.0, mucca_sd_mm2, n_subjects)
    )
    clinical = pd.DataFrame({"subject": subjects, "age": age, "sex": sex})
    truth_outcomes: dict[str, dict[str, float]] = {}
    for name, (slope, rho) in outcomes.items():
        if not 0.0 < rho < 1.0:
            raise ValueError(f"outcome {name}: partial correlation magnitude must be in (0, 1), got {rho}")
        noise_sd = abs(slope) * mucca_sd_mm2 * math.sqrt(1.0 / rho**2 - 1.0)
        clinical[name] = 3.0 + slope * (hr - mucca_mean_mm2) + 0.02 * (age - 45.0) + rng.normal(0, noise_sd, n_subjects)
        truth_outcomes[name] = {"slope": slope, "partial_r": math.copysign(rho, slope), "noise_sd": noise_sd}

    rows: list[dict[str, object]] = []
    for s_idx, setting in enumerate(settings):
        sr = hr + rng.normal(0.0, sr_noise_mm2[s_idx], n_subjects)
        lr = (
            hr
            + lr_bias_mm2
            + lr_excess_slope * (hr - mucca_mean_mm2)
            + rng.normal(0.0, lr_noise_mm2[s_idx], n_subjects)
        )
        psnr_sr = psnr_sr_db - s_idx + rng.normal(0.0, 1.2, n_subjects)
        psnr_lr = psnr_sr - psnr_margin_db + rng.normal(0.0, 0.5, n_subjects)
        ssim_sr = np.clip(0.95 - 0.01 * s_idx + rng.normal(0.0, 0.01, n_subjects), 0.0, 1.0)
        ssim_lr = np.clip(ssim_sr - 0.03 + rng.normal(0.0, 0.005, n_subjects), 0.0, 1.0)
        per_method = {
            "HR": {"mucca_mm2": hr},
            "LR": {"mucca_mm2": lr, "psnr": psnr_lr, "ssim": ssim_lr},
            "SR": {"mucca_mm2": sr, "psnr": psnr_sr, "ssim": ssim_sr},
        }
        for method, metrics in per_method.items():
            for metric, values in metrics.items():
                rows.extend(
                    {
                        "subject": subj,
                        "setting": setting,
                        "method": method,
                        "metric": metric,
                        "value": float(v),
                        "backend": SYNTHETIC_BACKEND,
                    }
                    for subj, v in zip(subjects, values, strict=True)
                )
    truth = {
        "outcomes": truth_outcomes,
        "lr_bias_mm2": lr_bias_mm2,
        "lr_excess_slope": lr_excess_slope,
        "psnr_margin_db": psnr_margin_db,
        "mucca_sd_mm2": mucca_sd_mm2,
        "settings": tuple(settings),
    }
    return SyntheticCohort(pd.DataFrame(rows), clinical, truth)


def simulate_synthetic_longitudinal_cohort(
    n_subjects: int = 80,
    seed: int = 0,
    visits_range: tuple[int, int] = (3, 8),
    follow_up_years: float = 6.0,
    mucca_mean_mm2: float = 75.0,
    sex_effect_mm2: float = 3.2,
    age_effect_mm2_per_year: float = -0.15,
    atrophy_mm2_per_year: float = -0.8,
    age_time_interaction: float = 0.0,
    intercept_sd_mm2: float = 6.0,
    slope_sd_mm2_per_year: float = 0.2,
    noise_sd_mm2: float = 1.0,
    lr_2d_bias_mm2: float = 0.8,
    lr_2d_noise_mm2: float = 3.0,
    sr_2d_bias_mm2: float = -4.6,
    t1w_offset_mm2: float = 9.184,
    image_type_probabilities: Mapping[str, float] | None = None,
    paired_t1w_fraction: float = 0.5,
    start_date: str = "2013-01-01",
) -> SyntheticCohort:
    """Draw a SYNTHETIC longitudinal cohort with a planted atrophy slope (mm²/year) and image-type biases.

    Visits per subject are uniform in ``visits_range`` (inclusive) at sorted uniform times in [0, follow_up_years]
    (the first at t = 0). Each visit has one image of a type drawn with ``image_type_probabilities`` (default 45 %
    T2w_2D, 26 % T2w_3D, 29 % T1w_3D as in Dewey et al.). 2-D images yield ``LR`` and ``SR`` rows, 3-D images one
    ``HR`` row (the acquired value). T1w values are ``t1w_offset_mm2`` below the true T2w MUCCA. A fraction
    ``paired_t1w_fraction`` of T2w_3D visits also gets a same-day T1w_3D image (session ``<visit>-t1w``).

    Args:
        n_subjects: number of subjects.
        seed: seed of :func:`numpy.random.default_rng`.
        visits_range: min and max visits per subject.
        follow_up_years: maximum follow-up (years).
        mucca_mean_mm2: μ (mm²) for a 45-year-old woman at baseline.
        sex_effect_mm2: β_sex.
        age_effect_mm2_per_year: β_age (per year of age at first scan).
        atrophy_mm2_per_year: β_time, the planted atrophy slope (mm²/year).
        age_time_interaction: β_age×time (mm²/year per year of age0 − 45).
        intercept_sd_mm2: τ₀.
        slope_sd_mm2_per_year: τ₁.
        noise_sd_mm2: σ, measurement noise of acquired 3-D images and SR.
        lr_2d_bias_mm2: bias of LR MUCCA on 2-D images.
        lr_2d_noise_mm2: extra noise of LR MUCCA on 2-D images.
        sr_2d_bias_mm2: bias of SR MUCCA on 2-D images (contrast difference of 2-D acquisitions).
        t1w_offset_mm2: δ_T1, T2w − T1w MUCCA.
        image_type_probabilities: image type → probability.
        paired_t1w_fraction: fraction of T2w_3D visits with a same-day T1w_3D image.
        start_date: date of the earliest possible first scan.

    Returns:
        The :class:`SyntheticCohort` with per-image ``results`` (``subject, session, method, metric, value``) and a
        per-image ``clinical`` visits table (``subject, session, scan_date, age, sex, image_type``); ``truth`` holds
        the planted fixed effects under the term names of :func:`mrisr.eval.stats.atrophy_formula` (``time`` is the
        coefficient with an uncentred ``age0``: β_time − 45·β_age×time).
    """
    probs = dict(image_type_probabilities or {"T2w_2D": 0.45, "T2w_3D": 0.26, "T1w_3D": 0.29})
    types = list(probs)
    p = np.array([probs[t] for t in types], dtype=float)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(start_date)
    results: list[dict[str, object]] = []
    visits: list[dict[str, object]] = []

    def add(subject: str, session: str, method: str, value: float) -> None:
        results.append(
            {
                "subject": subject,
                "session": session,
                "setting": "clinical",
                "method": method,
                "metric": "mucca_mm2",
                "value": float(value),
                "backend": SYNTHETIC_BACKEND,
            }
        )

    for subject in _subject_ids(n_subjects):
        age0 = float(rng.uniform(25.0, 65.0))
        sex = int(rng.integers(0, 2))
        b0 = rng.normal(0.0, intercept_sd_mm2)
        b1 = rng.normal(0.0, slope_sd_mm2_per_year)
        n_visits = int(rng.integers(visits_range[0], visits_range[1] + 1))
        times = np.concatenate([[0.0], np.sort(rng.uniform(0.0, follow_up_years, n_visits - 1))])
        offset_days = int(rng.integers(0, 365 * 4))
        base = mucca_mean_mm2 + sex_effect_mm2 * sex + age_effect_mm2_per_year * (age0 - 45.0) + b0
        slope = atrophy_mm2_per_year + age_time_interaction * (age0 - 45.0) + b1
        for v, t in enumerate(times):
            session = f"{subject}-v{v:02d}"
            date = start + pd.Timedelta(days=offset_days + round(t * 365.25))
            true = base + slope * t
            kind = str(rng.choice(types, p=p))
            age_at = age0 + t
            visits.append(
                {"subject": subject, "session": session, "scan_date": date.date().isoformat(), "age": age_at,
                 "sex": sex, "image_type": kind}
            )  # fmt: skip
            if kind.endswith("2D"):
                add(subject, session, "SR", true + sr_2d_bias_mm2 + rng.normal(0.0, noise_sd_mm2))
                lr_noise = math.hypot(noise_sd_mm2, lr_2d_noise_mm2)
                add(subject, session, "LR", true + lr_2d_bias_mm2 + rng.normal(0.0, lr_noise))
            elif kind.startswith("T1w"):
                add(subject, session, "HR", true - t1w_offset_mm2 + rng.normal(0.0, noise_sd_mm2))
            else:
                add(subject, session, "HR", true + rng.normal(0.0, noise_sd_mm2))
                if rng.uniform() < paired_t1w_fraction:
                    t1_session = f"{session}-t1w"
                    visits.append({**visits[-1], "session": t1_session, "image_type": "T1w_3D"})
                    add(subject, t1_session, "HR", true - t1w_offset_mm2 + rng.normal(0.0, noise_sd_mm2))
    truth = {
        # Coefficients as estimated with an uncentred age0: time = β_time − 45·β_age×time.
        "time": atrophy_mm2_per_year - 45.0 * age_time_interaction,
        "atrophy_mm2_per_year_at_45": atrophy_mm2_per_year,
        "sex": sex_effect_mm2,
        "age0": age_effect_mm2_per_year,
        "age0:time": age_time_interaction,
        "image_2d_SR": sr_2d_bias_mm2,
        "image_2d_LR": lr_2d_bias_mm2,
        "t1w_offset_mm2": t1w_offset_mm2,
    }
    return SyntheticCohort(pd.DataFrame(results), pd.DataFrame(visits), truth)
