"""Where a run reports: a progress bar, TensorBoard event files and a JSON-lines metrics file.

    <workdir>/tensorboard/   event files (tensorboardX, no TensorFlow): `tensorboard --logdir`
    <workdir>/metrics.jsonl  one JSON object per line: {"step": s, "split": "train", "loss": ...}

The progress bar (tqdm) shows the step, the rate and the time left; it writes nothing when the
output is not a terminal (logs of batch jobs stay clean), where a line per report is printed
instead.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping

import tqdm
from tensorboardX import SummaryWriter


def progress_bar(total: int, initial: int = 0, *, enabled: bool = True) -> tqdm.tqdm:
    """A tqdm bar over train steps with ETA; off when stderr is not a TTY or `enabled` is False.

    Args:
      total: the last step.
      initial: the step the run starts (or resumes) from.
      enabled: False for processes other than the first host.

    Returns:
      The bar (call `update(n)`, `set_postfix(...)`, `close()`).
    """
    if total < 0 or not 0 <= initial <= total:
        raise ValueError(
            f"progress_bar: need 0 <= initial <= total, got initial={initial}, total={total}"
        )
    return tqdm.tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        disable=not (enabled and sys.stderr.isatty()),
    )


class MetricWriter:
    """Writes scalar metrics to TensorBoard and to `metrics.jsonl`, and images to TensorBoard.

    Args:
      workdir: the run's directory (created if missing).
      enabled: False on hosts other than the first: nothing is written.
      echo: also print one line per `write` to stdout (for runs without a progress bar).
    """

    def __init__(self, workdir: str, *, enabled: bool = True, echo: bool = False):
        self.workdir = workdir
        self.enabled = enabled
        self.echo = echo
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, "tensorboard")
        self._summary = None
        if enabled:
            os.makedirs(self.tensorboard_dir, exist_ok=True)
            self._summary = SummaryWriter(self.tensorboard_dir)

    def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
        """Record `values` (name -> number) of `split` ("train", "eval") at `step`."""
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"MetricWriter.write: step must be an int >= 0, got {step!r}")
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        for name, value in clean.items():
            self._summary.add_scalar(f"{split}/{name}", value, step)
        record = {"step": step, "split": split}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()})
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.echo:
            shown = " ".join(f"{k}={v:.4g}" for k, v in clean.items())
            print(f"step {step} {split}: {shown}", flush=True)

    def write_image(self, step: int, tag: str, path: str) -> None:
        """Add the PNG file at `path` to TensorBoard under `tag`."""
        if not self.enabled:
            return
        import matplotlib.image

        image = matplotlib.image.imread(path)  # [H, W, C] floats in [0, 1]
        self._summary.add_image(tag, image[..., :3], step, dataformats="HWC")

    def flush(self) -> None:
        """Flush the event file."""
        if self._summary is not None:
            self._summary.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._summary is not None:
            self._summary.close()
            self._summary = None
