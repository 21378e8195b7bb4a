"""What every study writes, and the paired statistics behind its verdict.

A study is one module, `experiments/studies/sNN_<name>.py`, run as

    python -m experiments.studies.sNN_<name> --mode {smoke,full} --seeds N --out DIR

and writes four files into DIR:

    results.csv   one row per condition × seed × bin (the study's own columns)
    summary.md    mean ± std over seeds, the paired difference with its interval, the published
                  anchor in its own row, and the verdict
    plot.png      the study's figure (headless: a matplotlib `Figure`, no pyplot)
    meta.json     versions, machine, mode, seeds, wall time and the study's own settings

Verdicts (briefs of the studies, §0): REPLICATED when every seed agrees in sign with the claim and
the mean effect clears the claim's threshold; NOT REPLICATED when the mean has the wrong sign and
its 95% t interval excludes 0; INCONCLUSIVE otherwise. An analytic study, whose numbers are exact,
is REPLICATED when every check holds and NOT REPLICATED when one fails.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPLICATED = "REPLICATED"
NOT_REPLICATED = "NOT REPLICATED"
INCONCLUSIVE = "INCONCLUSIVE"
VERDICTS = (REPLICATED, NOT_REPLICATED, INCONCLUSIVE)

MODES = ("smoke", "full")
"""smoke: every condition at tiny size, end to end, in seconds (the test suite runs it); full: the
measured run whose outputs are committed under experiments/results/<study>/."""


def parse_args(
    description: str, argv: Sequence[str] | None = None, *, seeds: int = 3
) -> argparse.Namespace:
    """The command line shared by every study: --mode, --seeds, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mode", choices=MODES, default="smoke", help="smoke or full run")
    parser.add_argument("--seeds", type=int, default=seeds, help="number of paired seeds")
    parser.add_argument("--out", type=Path, required=True, help="folder for the four outputs")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """treatment − control over paired seeds: mean, sd (ddof 1), the 95% t interval, agreement.

    `agreeing` counts the seeds whose difference has the sign of the mean (0 when the mean is 0).
    With one seed the interval is (−inf, inf).
    """

    mean: float
    sd: float
    low: float
    high: float
    n: int
    agreeing: int


def t_quantile_975(dof: int) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom.

    With n = 3 seeds (dof 2) it is 4.303, so the 95% interval is mean ± 4.303·sd/√3 = ± 2.48·sd.
    """
    from scipy import stats  # scipy comes with scikit-learn, which the studies use for data

    return float(stats.t.ppf(0.975, dof))


def paired_difference(treatment: Sequence[float], control: Sequence[float]) -> PairedDifference:
    """Statistics of treatment[i] − control[i] over paired seeds i (the same init and data)."""
    a, b = np.asarray(treatment, np.float64), np.asarray(control, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired_difference: treatment and control must be 1-D of equal, nonzero length "
            f"(one value per seed), got shapes {a.shape} and {b.shape}"
        )
    d = a - b
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile_975(n - 1) * sd / math.sqrt(n) if n > 1 else math.inf
    agreeing = int(np.sum(np.sign(d) == np.sign(mean))) if mean != 0 else 0
    return PairedDifference(mean, sd, mean - half, mean + half, n, agreeing)


def verdict_from_difference(difference: PairedDifference, threshold: float) -> str:
    """The verdict on a claim that predicts treatment − control ≥ `threshold` (> 0)."""
    if difference.agreeing == difference.n and difference.mean >= threshold:
        return REPLICATED
    if difference.mean < 0 and difference.high < 0:
        return NOT_REPLICATED
    return INCONCLUSIVE


def verdict_from_checks(checks: Mapping[str, bool]) -> str:
    """An analytic study's verdict: every check must hold."""
    return REPLICATED if all(checks.values()) else NOT_REPLICATED


def mean_std(values: Iterable[float]) -> str:
    """`mean ± std` (ddof 1) of per-seed values, or the single value."""
    x = np.asarray(list(values), np.float64)
    if x.size == 1:
        return f"{x[0]:.4g}"
    return f"{x.mean():.4g} ± {x.std(ddof=1):.2g}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of `rows` with `columns` (floats to 4 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Versions and hardware, for meta.json."""
    import flax
    import jax

    return {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
    }


class Timer:
    """Wall time since creation, in seconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def write_outputs(
    out: Path,
    *,
    rows: Sequence[Mapping[str, Any]],
    summary: str,
    figure: Any,
    meta: Mapping[str, Any],
) -> None:
    """Write results.csv, summary.md, plot.png and meta.json into `out` (created if needed).

    A non-finite float in `rows` is refused: a study that produced one has failed, and says so
    here rather than in a plot.
    """
    if not rows:
        raise ValueError("write_outputs: rows is empty; a study must report what it measured")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"write_outputs: {key}={value} in row {dict(row)} is not finite")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.md").write_text(summary.rstrip() + "\n")
    figure.savefig(out / "plot.png", dpi=110, bbox_inches="tight")
    (out / "meta.json").write_text(json.dumps({**machine(), **meta}, indent=2, default=str) + "\n")


def new_figure(width: float = 8.0, height: float = 3.5, columns: int = 1):
    """A headless matplotlib figure with `columns` side-by-side axes (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns)
    return figure, np.atleast_1d(axes)


def _typed(value: str) -> Any:
    """A results.csv cell back as the bool, int or float it was written from (else the text)."""
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results.csv written by `write_outputs`, with numbers and booleans typed, so a
    study's `table`, `plot` and `verdict` can be rerun on committed results."""
    with open(path, newline="") as f:
        return [
            {key: _typed(value) for key, value in row.items() if value != ""}
            for row in csv.DictReader(f)
        ]
