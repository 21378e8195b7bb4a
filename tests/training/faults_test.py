"""The training loop under faults: a checkpoint directory that cannot be written ends the program
at once with one line; checkpoints are saved before the evaluation of the same step; what can be
checked at start-up (a beam wider than the vocabulary) is checked before any training.
"""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attn.training import loop
from attn.training.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[2]


def dates_smoke(data_dir: Path):
    spec = importlib.util.spec_from_file_location(
        "dates_config", ROOT / "experiments/configs/dates.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.dataset.data_dir = str(data_dir)
    return config


def test_unwritable_checkpoint_directory_is_one_line_at_once(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "checkpoints").write_text("a file where the checkpoints go")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments/train.py"), "--config",
         str(ROOT / "experiments/configs/dates.py:smoke"), f"--workdir={workdir}",
         f"--config.dataset.data_dir={tmp_path / 'data'}"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot create the checkpoint directory"), last
    assert time.monotonic() - start < 120


def test_beam_wider_than_the_vocabulary_stops_before_training(tmp_path):
    config = dates_smoke(tmp_path / "data")
    config.eval.beam_size = 500
    with pytest.raises(ValueError, match=r"config.eval.beam_size=500 is larger than the vocab"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert not list((tmp_path / "run" / "checkpoints").iterdir())


def test_evaluation_error_keeps_the_checkpoint_of_its_step(tmp_path, monkeypatch):
    def failing_evaluation(self, step, writer):
        raise RuntimeError(f"evaluation failed at step {step}")

    monkeypatch.setattr(loop.Evaluator, "__call__", failing_evaluation)
    config = dates_smoke(tmp_path / "data")
    with pytest.raises(RuntimeError, match="evaluation failed at step 2"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
