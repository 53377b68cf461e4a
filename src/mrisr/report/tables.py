"""Benchmark tables of :func:`~mrisr.report.summary.summarize` output (Markdown, LaTeX booktabs) and of clinical rows.

Best means of a row are bold; significance markers of the paired tests against the reference method follow the
value; the legend states the conventions.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd

from mrisr.report.summary import KEY_COLUMNS, ordered

__all__ = ["clinical_markdown", "format_p", "latex_escape", "latex_table", "markdown_table"]


def _decimals(values: pd.Series) -> int:
    """Decimals showing about four significant digits of the median magnitude (1 to 4)."""
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
    methods = ordered(summary["method"])
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
    """Pipe table of :func:`~mrisr.report.summary.summarize` output.

    Best values in ``**bold**``, significance markers escaped (``\\*``), the legend below the table.
    """
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
    """A booktabs ``tabular`` (``\\toprule``/``\\midrule``/``\\bottomrule``) of ``summarize`` output.

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
        cells.append("–" if r is None else f"{r:.3f} ({format_p(p)})")
        cells.append("–" if slope is None else f"{slope:.4g} [{lo:.4g}, {hi:.4g}]")
        cells.append("–" if wp is None else format_p(wp))
        cells.append(str(n.iloc[0]) if len(n) else "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    note = "Partial correlations and regression slopes adjusted for the covariates of the callback (age, sex)."
    return "\n".join(lines) + "\n\n" + note + "\n"


def format_p(p: float | None) -> str:
    """``p = 0.012``, ``p < 0.001``, or ``–`` when missing."""
    if p is None or not np.isfinite(p):
        return "–"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
