"""``python -m mrisr.report runs=<run dirs | multirun dir | CSVs> output=<dir> [reference=cubic] [metrics=[…]]``.

Aggregates the tidy per-image result CSVs (``subject, setting, method, metric, value``) of many runs into benchmark
tables and figures:

* ``benchmark.md``, ``benchmark.tex`` (a booktabs ``tabular`` to ``\\input``) and ``summary.csv``: mean ± SD over
  subjects (and pooled runs) per run label × setting × metric (rows) and method (columns); the best mean of a row in
  bold; markers for a paired t-test (per run and subject) against the ``reference`` method;
* ``runs.csv``: every run found, its label and its tables;
* ``clinical.md``: the rows of ``clinical_stats.csv`` files when present
  (:class:`~mrisr.callbacks.clinical.ClinicalCorrelationCallback`);
* figures (PNG): ``boxplot_<metric>`` per setting (Dewey et al., Fig. 3); for metrics measured on HR as well
  (``hr_method``, e.g. MUCCA): ``correlation_<metric>`` heat maps across settings (Fig. 4), ``agreement_<metric>``
  scatter against HR with identity line, OLS fit and 95 % confidence band (Fig. 5), ``bland_altman_<metric>``; with a
  clinical table: ``clinical_<metric>`` scatter against each outcome (Fig. 6).

Runs are labelled by the Hydra overrides that differ between them (``.hydra/overrides.yaml``); runs that differ only
in ``pool`` keys (default ``seed``) or not at all are pooled. Metrics missing from some runs are left empty; extra
metrics are tabulated unless ``metrics`` restricts them. The last line printed is a JSON object listing the outputs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from mrisr.eval import stats
from mrisr.eval.clinical import RESULT_COLUMNS, load_clinical_table, load_results
from mrisr.io.errors import MrisrInputError
from mrisr.utils.atomic import save_figure_atomic, write_rows_atomic, write_text_atomic

__all__ = [
    "Run",
    "clinical_markdown",
    "find_runs",
    "label_runs",
    "latex_escape",
    "latex_table",
    "load_runs",
    "markdown_table",
    "plot_agreement",
    "plot_bland_altman",
    "plot_boxplots",
    "plot_clinical",
    "plot_correlation_heatmaps",
    "save_figure_atomic",
    "summarize",
    "write_rows_atomic",
    "write_text_atomic",
]

log = logging.getLogger(__name__)


def _save_and_close(figure: Any, path: Path) -> Path:
    """Save a report figure atomically (PNG, 130 dpi) and close it."""
    try:
        return save_figure_atomic(figure, path, dpi=130)
    finally:
        _pyplot().close(figure)


KEY_COLUMNS = ("label", "setting", "metric")
METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mucca_mm2": "MUCCA (mm²)", "csa_mm2": "CSA (mm²)"}


# ---------------------------------------------------------------------------------------------------------------
# Finding and labelling runs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run: a directory with tidy CSVs (or a tidy CSV file given directly).

    Attributes:
        path: run directory or CSV file.
        tables: tidy result CSVs of the run.
        overrides: Hydra command-line overrides of the run (empty when unknown).
        label: label distinguishing it from the other runs (see :func:`label_runs`).
    """

    path: Path
    tables: tuple[Path, ...]
    overrides: tuple[str, ...] = ()
    label: str = ""


def _is_tidy(path: Path) -> bool:
    try:
        columns = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return set(RESULT_COLUMNS) <= {str(c).strip() for c in columns}


def _read_overrides(run_dir: Path) -> tuple[str, ...]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ()
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(path))
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


def find_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Find runs: each path is a run directory, a directory holding runs (e.g. a multirun) or a tidy CSV file.

    A run directory is any directory containing a CSV with the columns ``subject, method, metric, value``; the search
    below a given directory is recursive. Overrides come from ``<run>/.hydra/overrides.yaml``.

    Raises:
        MrisrInputError: a path does not exist, or no tidy CSV was found.
    """
    runs: dict[Path, Run] = {}
    given = [Path(p) for p in paths]
    for path in given:
        if not path.exists():
            raise MrisrInputError(path, "does not exist", "pass run directories, multirun directories or tidy CSVs")
        if path.is_file():
            if not _is_tidy(path):
                raise MrisrInputError(path, f"not a tidy result table (needs columns {list(RESULT_COLUMNS)})", "check")
            runs.setdefault(path.resolve(), Run(path, (path,)))
            continue
        for folder in sorted({csv.parent for csv in path.rglob("*.csv")}):
            tables = tuple(t for t in sorted(folder.glob("*.csv")) if _is_tidy(t))
            if tables:
                runs.setdefault(folder.resolve(), Run(folder, tables, _read_overrides(folder)))
    if not runs:
        raise MrisrInputError(
            ", ".join(map(str, given)),
            f"no tidy result CSV (columns {', '.join(RESULT_COLUMNS)}) found",
            "point runs= at run directories containing test_metrics.csv, their multirun directory, or tidy CSVs",
        )
    return list(runs.values())


def _parse_override(text: str) -> tuple[str, str]:
    key, _, value = text.lstrip("+~").partition("=")
    return key.strip(), value.strip()


def label_runs(
    runs: Sequence[Run], pool: Sequence[str] = ("seed",), ignore_prefixes: Sequence[str] = ("paths.", "hydra.")
) -> list[Run]:
    """Label runs by the overrides whose values differ between them.

    Keys in ``pool`` and keys starting with ``ignore_prefixes`` are left out, so runs differing only in them share a
    label and are pooled. A run without recorded overrides is labelled by its directory or file name.

    Returns:
        The runs with ``label`` set (``""`` when all runs share one configuration).
    """
    parsed = [dict(_parse_override(o) for o in run.overrides) for run in runs]
    keys: list[str] = []
    for overrides in parsed:
        keys += [k for k in overrides if k not in keys]
    varying = [
        k
        for k in keys
        if k not in pool
        and not k.startswith(tuple(ignore_prefixes))
        and len({o.get(k, "<default>") for o, r in zip(parsed, runs, strict=True) if r.overrides}) > 1
    ]
    labelled = []
    for run, overrides in zip(runs, parsed, strict=True):
        if not run.overrides:
            label = run.path.stem if run.path.is_file() else run.path.name
        else:
            label = ", ".join(f"{k}={overrides.get(k, '<default>')}" for k in varying)
        labelled.append(replace(run, label=label))
    return labelled


def load_runs(runs: Sequence[Run]) -> pd.DataFrame:
    """Tidy rows of all runs with ``run`` (path) and ``label`` columns; ``setting`` is filled with ``""`` if absent."""
    frames = []
    for run in runs:
        frame = load_results(list(run.tables))
        if "setting" not in frame.columns:
            frame["setting"] = ""
        frame["setting"] = frame["setting"].fillna("").astype(str)
        frame.insert(0, "label", run.label)
        frame.insert(0, "run", str(run.path))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------------
# Summary table
# ---------------------------------------------------------------------------------------------------------------


def _ordered(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _direction(metric: str, lower_is_better: Sequence[str], unranked: Sequence[str]) -> int:
    """+1 when higher is better, −1 when lower is better, 0 when there is no best (e.g. MUCCA)."""
    name = metric.lower()
    if any(u.lower() == name for u in unranked):
        return 0
    return -1 if any(token.lower() in name for token in lower_is_better) else 1


def summarize(
    rows: pd.DataFrame,
    reference: str | None = "cubic",
    metrics: Sequence[str] | None = None,
    lower_is_better: Sequence[str] = ("mae", "mse", "rmse", "lpips", "err", "loss", "hd95"),
    unranked: Sequence[str] = ("mucca_mm2", "csa_mm2"),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Mean ± SD per label × setting × metric × method, the best method per row and paired tests vs ``reference``.

    Paired t-tests (:func:`~mrisr.eval.stats.paired_ttest`) pair a method's value with the reference's value of the
    same run and subject (and session) in the same setting; they need at least two pairs.

    Args:
        rows: output of :func:`load_runs`.
        reference: method compared against (None: no tests).
        metrics: metrics kept, in this order (None: all, in order of appearance). Missing ones are skipped.
        lower_is_better: substrings of metric names where lower is better.
        unranked: metrics without a best value (bold nothing).
        alpha: significance level of the lowest marker.

    Returns:
        One row per label, setting, metric and method: ``n``, ``mean``, ``sd``, ``p_vs_reference``, ``marker``,
        ``best``, ``direction``.
    """
    available = _ordered(rows["metric"])
    if metrics is None:
        chosen = available
    else:
        chosen = [m for m in metrics if m in available]
        absent = [m for m in metrics if m not in available]
        if absent:
            log.warning("metrics %s are not in any run (present: %s)", absent, available)
        if not chosen:
            raise MrisrInputError(
                None, f"none of the metrics {list(metrics)} is in the runs", f"choose among {available}"
            )
    sel = rows[rows["metric"].isin(chosen)]
    pair_keys = ["run", "subject"] + (["session"] if "session" in sel.columns else [])
    records = []
    labels = _ordered(sel["label"])
    for label in labels:
        part = sel[sel["label"] == label]
        for setting in sorted(_ordered(part["setting"]), key=_natural_key):
            for metric in chosen:
                block = part[(part["setting"] == setting) & (part["metric"] == metric)]
                if block.empty:
                    continue
                wide = block.pivot_table(index=pair_keys, columns="method", values="value", aggfunc="mean")
                for method in _ordered(block["method"]):
                    values = block.loc[block["method"] == method, "value"].astype(float)
                    p = math.nan
                    if reference is not None and method != reference and reference in wide.columns:
                        pairs = wide[[method, reference]].dropna()
                        if len(pairs) >= 2:
                            p = stats.paired_ttest(pairs[method], pairs[reference]).p
                    records.append(
                        {
                            "label": label,
                            "setting": setting,
                            "metric": metric,
                            "method": method,
                            "n": int(values.notna().sum()),
                            "mean": float(values.mean()),
                            "sd": float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan,
                            "reference": reference or "",
                            "p_vs_reference": p,
                            "marker": _marker(p, alpha),
                            "direction": _direction(metric, lower_is_better, unranked),
                        }
                    )
    summary = pd.DataFrame(records)
    summary["best"] = False
    for _, group in summary.groupby(list(KEY_COLUMNS), sort=False):
        direction = int(group["direction"].iloc[0])
        if direction == 0 or len(group) < 2 or not group["mean"].notna().any():
            continue
        best = group["mean"].max() if direction > 0 else group["mean"].min()
        summary.loc[group.index[group["mean"] == best], "best"] = True
    return summary


def _marker(p: float, alpha: float) -> str:
    if not np.isfinite(p):
        return ""
    if p < 0.001:
        return "***"
    if p < 0.01:
        return "**"
    return "*" if p < alpha else ""


def _decimals(values: pd.Series) -> int:
    finite = values[np.isfinite(values)].abs()
    if finite.empty or finite.median() == 0:
        return 3
    return int(np.clip(3 - math.floor(math.log10(float(finite.median()))), 1, 4))


def _cells(
    summary: pd.DataFrame,
    bold: Callable[[str], str],
    marker: Callable[[str], str],
    escape: Callable[[str], str],
    pm: str,
) -> tuple[list[str], list[list[str]], int]:
    """Header, body and number of key columns of the wide table: key columns, then one column per method."""
    methods = _ordered(summary["method"])
    keys = [
        k
        for k in KEY_COLUMNS
        if k == "metric" or summary[k].nunique() > 1 or (k == "setting" and summary[k].ne("").any())
    ]
    decimals = {m: _decimals(g["mean"]) for m, g in summary.groupby("metric")}
    body = []
    for key, group in summary.groupby(list(KEY_COLUMNS), sort=False):
        row = dict(zip(KEY_COLUMNS, key, strict=True))
        cells = [escape(str(row[k])) for k in keys]
        by_method = group.set_index("method")
        for method in methods:
            if method not in by_method.index:
                cells.append("–")
                continue
            rec = by_method.loc[method]
            d = decimals[row["metric"]]
            text = f"{rec['mean']:.{d}f}" + (f"{pm}{rec['sd']:.{d}f}" if np.isfinite(rec["sd"]) else "")
            cells.append((bold(text) if rec["best"] else text) + (marker(rec["marker"]) if rec["marker"] else ""))
        body.append(cells)
    header = [escape("Run" if k == "label" else k.capitalize()) for k in keys] + [escape(str(m)) for m in methods]
    return header, body, len(keys)


def _legend(summary: pd.DataFrame, alpha: float) -> str:
    reference = summary["reference"].iloc[0] if len(summary) else ""
    ranked = sorted(set(summary.loc[summary["direction"] != 0, "metric"]))
    text = "Mean ± SD over subjects (and pooled runs)" + (
        "; SD omitted where n = 1." if (summary["n"] < 2).any() else "."
    )
    if ranked:
        lower = sorted(set(summary.loc[summary["direction"] < 0, "metric"]))
        text += " Bold: best mean of the row" + (f" (lower is better for {', '.join(lower)})" if lower else "") + "."
    if reference:
        text += (
            f" Paired t-test per subject against {reference}: * p < {alpha:g}, ** p < 0.01, *** p < 0.001"
            " (no marker: not significant or fewer than two pairs)."
        )
    return text


def markdown_table(summary: pd.DataFrame, alpha: float = 0.05) -> str:
    """Pipe table of :func:`summarize` output: best values in ``**bold**``, significance markers escaped (``\\*``)."""
    header, body, _ = _cells(
        summary,
        bold=lambda t: f"**{t}**",
        marker=lambda m: m.replace("*", "\\*"),
        escape=lambda t: t.replace("|", "\\|").replace("*", "\\*"),
        pm=" ± ",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n\n" + _legend(summary, alpha) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "–": "--",
    "²": r"\textsuperscript{2}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_`` → ``\\_``, ``|`` → ``\\textbar{}``…) for text mode."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex_table(summary: pd.DataFrame, alpha: float = 0.05) -> str:
    """A booktabs ``tabular`` (``\\toprule``/``\\midrule``/``\\bottomrule``) of :func:`summarize` output.

    Best values in ``\\textbf{}``, significance markers as superscripts, text escaped (``_`` → ``\\_``); the legend
    (for the caption) is in the leading comment. The including document needs ``\\usepackage{booktabs}``.
    """
    header, body, n_keys = _cells(
        summary,
        bold=lambda t: f"\\textbf{{{t}}}",
        marker=lambda m: f"$^{{{m}}}$",
        escape=latex_escape,
        pm=" $\\pm$ ",
    )
    spec = "l" * n_keys + "c" * (len(header) - n_keys)
    lines = [
        "% Generated by mrisr.report; needs \\usepackage{booktabs}. Caption text:",
        *textwrap.wrap(_legend(summary, alpha), 116, initial_indent="% ", subsequent_indent="% "),
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
    ]
    for index, cells in enumerate(body):
        shown = list(cells)
        if index and n_keys > 1:
            previous = body[index - 1]
            if cells[0] != previous[0]:
                lines.append("\\addlinespace")
            # Blank leading key cells that repeat the row above (all but the last key column).
            for k in range(n_keys - 1):
                if cells[: k + 1] != previous[: k + 1]:
                    break
                shown[k] = ""
        lines.append(" & ".join(c.replace("–", "--") for c in shown) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def clinical_markdown(rows: pd.DataFrame) -> str:
    """Markdown table of clinical statistic rows: partial r (p), slope and Williams' p per method."""
    pick = rows[rows["analysis"].isin(["partial_correlation", "regression", "williams"])]
    pick = pick.fillna({c: "" for c in ("label", "metric", "setting", "outcome", "method")})
    lines = [
        "| Run | Metric | Setting | Outcome | Method | r (p) | slope [95 % CI] | Williams p vs ref. | n |",
        "|" + "---|" * 9,
    ]
    for key, group in pick.groupby(["label", "metric", "setting", "outcome", "method"], sort=False):
        values = {(a, s): v for a, s, v in zip(group["analysis"], group["statistic"], group["value"], strict=True)}
        r, p = values.get(("partial_correlation", "r")), values.get(("partial_correlation", "p"))
        slope = values.get(("regression", "slope"))
        lo, hi = values.get(("regression", "ci_low")), values.get(("regression", "ci_high"))
        wp = values.get(("williams", "p"))
        n = group.loc[group["analysis"] == "partial_correlation", "n"]
        cells = [*map(str, key)]
        cells.append("–" if r is None else f"{r:.3f} ({_fmt_p(p)})")
        cells.append("–" if slope is None else f"{slope:.4g} [{lo:.4g}, {hi:.4g}]")
        cells.append("–" if wp is None else _fmt_p(wp))
        cells.append(str(n.iloc[0]) if len(n) else "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    note = "Partial correlations and regression slopes adjusted for the covariates of the callback (age, sex)."
    return "\n".join(lines) + "\n\n" + note + "\n"


def _fmt_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short_label(label: str) -> str:
    """Figure label of a run: ``a.b.key=value, c.other=v`` → ``key=value, other=v``."""
    parts = [p.strip() for p in str(label).split(", ") if p.strip()]
    return ", ".join(
        p.split("=", 1)[0].rsplit(".", 1)[-1] + ("=" + p.split("=", 1)[1] if "=" in p else "") for p in parts
    )


def _resolution(rows: pd.DataFrame, sep: str = " | ") -> pd.Series:
    """One label per (run label, setting): the setting, prefixed by the short run label when there are several."""
    labels = rows["label"].astype(str).map(_short_label)
    settings = rows["setting"].astype(str)
    if labels.nunique() > 1:
        return pd.Series(np.where(settings != "", labels + sep + settings, labels), index=rows.index)
    return settings.where(settings != "", labels)


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def plot_boxplots(rows: pd.DataFrame, metric: str, path: Path) -> Path:
    """Box plots of ``metric`` per setting (x) and method (colours), subjects as dots (Dewey et al., Fig. 3)."""
    plt = _pyplot()
    data = rows[rows["metric"] == metric].assign(resolution=lambda d: _resolution(d, sep="\n"))
    groups = sorted(_ordered(data["resolution"]), key=_natural_key)
    methods = _ordered(data["method"])
    width = 0.8 / len(methods)
    longest = max(len(line) for g in groups for line in str(g).splitlines())
    per_group = max(1.1 * max(1.0, len(methods) / 2.5), 0.085 * longest)
    fig, ax = plt.subplots(figsize=(max(5.0, per_group * len(groups) + 1.5), 4.2))
    colours = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)
    for m_idx, method in enumerate(methods):
        positions, series = [], []
        for g_idx, group in enumerate(groups):
            values = data.loc[(data["resolution"] == group) & (data["method"] == method), "value"].dropna().to_numpy()
            if values.size:
                positions.append(g_idx + (m_idx - (len(methods) - 1) / 2) * width)
                series.append(values)
        if not series:
            continue
        colour = colours(m_idx % 10)
        box = ax.boxplot(series, positions=positions, widths=width * 0.8, patch_artist=True, showfliers=False)
        for patch in box["boxes"]:
            patch.set(facecolor=(*colour[:3], 0.35), edgecolor=colour)
        for part in ("whiskers", "caps", "medians"):
            for line in box[part]:
                line.set(color=colour, linewidth=1.2)
        for pos, values in zip(positions, series, strict=True):
            jitter = rng.uniform(-0.25, 0.25, values.size) * width
            ax.scatter(pos + jitter, values, s=12, color=colour, alpha=0.8, zorder=3, linewidths=0)
        ax.plot([], [], color=colour, linewidth=6, alpha=0.5, label=str(method))
    ax.set_xticks(range(len(groups)), [str(g) for g in groups], fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(_metric_label(metric))
    ax.set_xlabel("setting")
    ax.set_title(f"{_metric_label(metric)} per setting")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="method", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save_and_close(fig, path)


def _hr_wide(rows: pd.DataFrame, metric: str, hr_method: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Per-subject frame with ``HR`` and ``<method> @ <resolution>`` columns, plus resolutions and methods."""
    data = rows[rows["metric"] == metric].assign(resolution=lambda d: _resolution(d))
    keys = ["subject"] + (["session"] if "session" in data.columns else [])
    hr = data[data["method"] == hr_method].groupby(keys)["value"].mean().rename(hr_method)
    others = data[data["method"] != hr_method]
    wide = others.pivot_table(index=keys, columns=["method", "resolution"], values="value", aggfunc="mean")
    wide.columns = [f"{m} @ {r}" for m, r in wide.columns]
    frame = pd.concat([hr, wide], axis=1)
    resolutions = sorted(_ordered(others["resolution"]), key=_natural_key)
    return frame, resolutions, _ordered(others["method"])


def plot_correlation_heatmaps(rows: pd.DataFrame, metric: str, hr_method: str, path: Path) -> Path | None:
    """Pearson r between HR and each method across settings, one heat map per method (Dewey et al., Fig. 4).

    Returns None (and logs why) when fewer than three subjects have the values.
    """
    plt = _pyplot()
    frame, resolutions, methods = _hr_wide(rows, metric, hr_method)
    if len(frame.dropna(how="all")) < 3 or not methods:
        log.info("correlation heat map of %s skipped: fewer than 3 subjects or no method besides %s", metric, hr_method)
        return None
    n_cols = 1 + len(resolutions)
    size = 0.75 * n_cols + 1.6
    fig, axes = plt.subplots(1, len(methods), figsize=(size * len(methods) + 0.8, size), squeeze=False)
    image = None
    for ax, method in zip(axes[0], methods, strict=True):
        cols = [hr_method] + [f"{method} @ {r}" for r in resolutions]
        cols = [c for c in cols if c in frame.columns]
        corr = frame[cols].corr(method="pearson", min_periods=3).to_numpy()
        names = [hr_method] + [c.split(" @ ", 1)[1] for c in cols[1:]]
        image = ax.imshow(corr, vmin=np.nanmin([np.nanmin(corr), 0.8]), vmax=1.0, cmap="viridis")
        for i in range(len(cols)):
            for j in range(len(cols)):
                if np.isfinite(corr[i, j]):
                    shade = (corr[i, j] - image.norm.vmin) / max(image.norm.vmax - image.norm.vmin, 1e-9)
                    ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if shade > 0.6 else "white")  # fmt: skip
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_title(f"{method}: {metric}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Pearson r")
    return _save_and_close(fig, path)


def _fit_band(x: np.ndarray, y: np.ndarray, grid: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, ...]:
    """OLS line on ``grid`` and its pointwise confidence band of the mean: ŷ ± t·s·√(1/n + (x − x̄)²/Sxx)."""
    n = x.size
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    s = math.sqrt(float(resid @ resid) / (n - 2))
    sxx = float(((x - x.mean()) ** 2).sum())
    crit = float(sps.t.ppf(0.5 + confidence / 2, n - 2))
    fit = intercept + slope * grid
    half = crit * s * np.sqrt(1.0 / n + (grid - x.mean()) ** 2 / sxx)
    return fit, fit - half, fit + half


def _grid_axes(n_rows: int, n_cols: int, panel: float = 2.8) -> tuple[Any, np.ndarray]:
    plt = _pyplot()
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel * n_cols + 0.6, (panel + 0.35) * n_rows + 0.5),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    return fig, axes


def plot_agreement(rows: pd.DataFrame, metric: str, hr_method: str, path: Path) -> Path | None:
    """Each method against HR per setting: identity line, OLS fit with 95 % band, r, R² and identity p (Fig. 5)."""
    frame, resolutions, methods = _hr_wide(rows, metric, hr_method)
    if hr_method not in frame.columns or len(frame) < 3:
        log.info("agreement plot of %s skipped: fewer than 3 subjects with %s", metric, hr_method)
        return None
    fig, axes = _grid_axes(len(methods), len(resolutions))
    all_values = frame.to_numpy(dtype=float)
    lo, hi = np.nanmin(all_values), np.nanmax(all_values)
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    lims = (lo - pad, hi + pad)
    for i, method in enumerate(methods):
        for j, res in enumerate(resolutions):
            ax = axes[i, j]
            column = f"{method} @ {res}"
            title = f"{method} · {res}"
            ax.plot(lims, lims, "--", color="0.5", linewidth=1, label="identity")
            if column in frame.columns:
                pair = frame[[hr_method, column]].dropna()
                x, y = pair[hr_method].to_numpy(), pair[column].to_numpy()
                ax.scatter(x, y, s=9, alpha=0.6, color=f"C{i}", linewidths=0)
                if x.size >= 3 and np.ptp(x) > 0:
                    grid = np.linspace(x.min(), x.max(), 50)
                    fit, band_lo, band_hi = _fit_band(x, y, grid)
                    ax.fill_between(grid, band_lo, band_hi, color=f"C{i}", alpha=0.2, linewidth=0)
                    ax.plot(grid, fit, color=f"C{i}", linewidth=1.3, label="OLS fit, 95 % CI")
                    test = stats.identity_line_test(x, y)
                    r = stats.pearson_correlation(x, y).r
                    p_text = _fmt_p(test.p_slope).removeprefix("p ")
                    title += f"\nr {r:.3f}, R² {test.r2:.2f}, n {test.n}\nslope {test.slope:.2f}, p(slope = 1) {p_text}"
            ax.set_title(title, fontsize=7.5)
            ax.set_xlim(lims)
            ax.set_ylim(lims)
            ax.set_aspect("equal")
            ax.grid(alpha=0.3)
            if i == len(methods) - 1:
                ax.set_xlabel(f"{hr_method} {_metric_label(metric)}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{method} {_metric_label(metric)}", fontsize=8)
    axes[0, 0].legend(loc="lower right", fontsize=7, frameon=False)
    fig.suptitle(f"{metric}: methods against {hr_method}", fontsize=10)
    return _save_and_close(fig, path)


def plot_bland_altman(rows: pd.DataFrame, metric: str, hr_method: str, path: Path) -> Path | None:
    """Bland–Altman plots (method − HR against their mean) per method and setting, with bias and 95 % limits."""
    frame, resolutions, methods = _hr_wide(rows, metric, hr_method)
    if hr_method not in frame.columns or len(frame) < 3:
        log.info("Bland-Altman plot of %s skipped: fewer than 3 subjects with %s", metric, hr_method)
        return None
    fig, axes = _grid_axes(len(methods), len(resolutions))
    for i, method in enumerate(methods):
        for j, res in enumerate(resolutions):
            ax = axes[i, j]
            column = f"{method} @ {res}"
            title = f"{method} · {res}"
            ax.axhline(0.0, color="0.6", linewidth=0.8)
            if column in frame.columns:
                pair = frame[[hr_method, column]].dropna()
                if len(pair) >= 2:
                    a, b = pair[column].to_numpy(), pair[hr_method].to_numpy()
                    ba = stats.bland_altman(a, b)
                    ax.scatter((a + b) / 2, a - b, s=9, alpha=0.6, color=f"C{i}", linewidths=0)
                    ax.axhline(ba.bias, color=f"C{i}", linewidth=1.3)
                    for limit in (ba.loa_low, ba.loa_high):
                        ax.axhline(limit, color=f"C{i}", linestyle="--", linewidth=1)
                    title += f"\nbias {ba.bias:.2f} [{ba.bias_ci_low:.2f}, {ba.bias_ci_high:.2f}], n {ba.n}"
                    title += f"\nLoA {ba.loa_low:.2f} to {ba.loa_high:.2f}"
            ax.set_title(title, fontsize=7.5)
            ax.grid(alpha=0.3)
            if i == len(methods) - 1:
                ax.set_xlabel(f"mean of method and {hr_method}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{method} − {hr_method}", fontsize=8)
    fig.suptitle(f"{metric}: Bland–Altman against {hr_method} (solid: bias, dashed: ±1.96 SD)", fontsize=10)
    return _save_and_close(fig, path)


def plot_clinical(
    rows: pd.DataFrame,
    clinical: pd.DataFrame,
    metric: str,
    outcomes: Sequence[str],
    path: Path,
    covariates: Sequence[str] = ("age", "sex"),
    seed: int = 0,
) -> Path | None:
    """Outcome against the metric per method (Dewey et al., Fig. 6), on the randomised-resolution cohort.

    With several settings each subject keeps one drawn setting (:func:`~mrisr.eval.stats.random_resolution_cohort`);
    panels show the OLS line with 95 % band and the partial r (p) adjusted for ``covariates``.
    """
    data = rows[rows["metric"] == metric]
    outcomes = [o for o in outcomes if o in clinical.columns]
    if data.empty or not outcomes:
        log.info("clinical plot of %s skipped: no rows or no outcome column", metric)
        return None
    if data["setting"].nunique() > 1:
        data = stats.random_resolution_cohort(data, seed=seed)
    wide = data.groupby(["subject", "method"])["value"].mean().unstack("method").reset_index()
    merged = wide.merge(clinical, on="subject", how="inner")
    methods = [c for c in wide.columns if c != "subject"]
    if len(merged) < 3 or not methods:
        log.info("clinical plot of %s skipped: fewer than 3 subjects with clinical data", metric)
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(outcomes), len(methods), figsize=(2.9 * len(methods) + 0.5, 2.9 * len(outcomes) + 0.6),
        squeeze=False, sharex=True, sharey="row", layout="constrained",
    )  # fmt: skip
    cov = [c for c in covariates if c in merged.columns]
    for i, outcome in enumerate(outcomes):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            pair = merged[[method, outcome, *cov]].dropna()
            x, y = pair[method].to_numpy(), pair[outcome].to_numpy()
            ax.scatter(x, y, s=8, alpha=0.5, color=f"C{j}", linewidths=0)
            if len(pair) > len(cov) + 3 and np.ptp(x) > 0:
                grid = np.linspace(x.min(), x.max(), 50)
                fit, lo, hi = _fit_band(x, y, grid)
                ax.fill_between(grid, lo, hi, color=f"C{j}", alpha=0.2, linewidth=0)
                ax.plot(grid, fit, color=f"C{j}", linewidth=1.3)
                c = stats.partial_correlation(pair, method, outcome, cov)
                ax.set_title(f"{method} · {outcome}\npartial r {c.r:.2f}, {_fmt_p(c.p)}, n {c.n}", fontsize=7.5)
            ax.grid(alpha=0.3)
            if i == len(outcomes) - 1:
                ax.set_xlabel(_metric_label(metric), fontsize=8)
            if j == 0:
                ax.set_ylabel(outcome, fontsize=8)
    adjusted = f"; partial r adjusted for {', '.join(cov)}" if cov else ""
    fig.suptitle(f"Clinical outcomes against {metric} (randomised-resolution cohort{adjusted})", fontsize=10)
    return _save_and_close(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    from omegaconf import ListConfig

    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [str(value)]


def _clinical_stats(runs: Sequence[Run]) -> pd.DataFrame | None:
    frames = []
    for run in runs:
        path = (run.path if run.path.is_dir() else run.path.parent) / "clinical_stats.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(label=run.label or run.path.name))
    return pd.concat(frames, ignore_index=True) if frames else None


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from mrisr.utils.cli import print_json_line
    from mrisr.utils.config import compose

    cfg = compose("report", argv)
    output = Path(cfg.output)
    runs = label_runs(find_runs(_as_list(cfg.runs)), pool=_as_list(cfg.pool))
    rows = load_runs(runs)
    metrics = _as_list(cfg.metrics) or None
    summary = summarize(
        rows,
        reference=cfg.reference,
        metrics=metrics,
        lower_is_better=_as_list(cfg.lower_is_better),
        unranked=_as_list(cfg.unranked),
        alpha=float(cfg.alpha),
    )
    if cfg.reference and cfg.reference not in set(rows["method"]):
        log.warning("reference method %r is not in the runs (methods: %s)", cfg.reference, _ordered(rows["method"]))
    written: dict[str, Any] = {"runs": len(runs), "labels": _ordered(r.label for r in runs)}
    run_rows = [{"label": r.label, "path": str(r.path), "overrides": " ".join(r.overrides),
                 "tables": " ".join(t.name for t in r.tables)} for r in runs]  # fmt: skip
    write_rows_atomic(run_rows, output / "runs.csv", fields=("label", "path", "overrides", "tables"))
    write_rows_atomic(summary.to_dict("records"), output / "summary.csv", fields=list(summary.columns))
    written["markdown"] = str(write_text_atomic(markdown_table(summary, float(cfg.alpha)), output / "benchmark.md"))
    written["latex"] = str(write_text_atomic(latex_table(summary, float(cfg.alpha)), output / "benchmark.tex"))
    written["csv"] = str(output / "summary.csv")
    clinical_rows = _clinical_stats(runs)
    if clinical_rows is not None:
        written["clinical_markdown"] = str(write_text_atomic(clinical_markdown(clinical_rows), output / "clinical.md"))

    figures: list[str] = []
    chosen = _ordered(summary["metric"])
    for metric in chosen:
        figures.append(str(plot_boxplots(rows, metric, output / f"boxplot_{metric}.png")))
        if cfg.hr_method in set(rows.loc[rows["metric"] == metric, "method"]):
            for name, plot in (
                ("correlation", plot_correlation_heatmaps),
                ("agreement", plot_agreement),
                ("bland_altman", plot_bland_altman),
            ):
                path = plot(rows, metric, str(cfg.hr_method), output / f"{name}_{metric}.png")
                if path is not None:
                    figures.append(str(path))
    if cfg.clinical:
        rename = OmegaConf.to_container(cfg.rename) if cfg.rename else {}
        outcomes = _as_list(cfg.outcomes)
        clinical = load_clinical_table(Path(cfg.clinical), outcomes, rename=rename)
        metric = str(cfg.clinical_metric)
        path = plot_clinical(rows, clinical, metric, outcomes, output / f"clinical_{metric}.png", seed=int(cfg.seed))
        if path is not None:
            figures.append(str(path))
    written["figures"] = figures
    print_json_line(written)
    return 0

