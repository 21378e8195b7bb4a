"""The training loop under faults: a checkpoint directory that cannot be written ends the program
at once with one line; checkpoints are saved before the evaluation of the same step; what can be
checked at start-up (a beam wider than the vocabulary) is checked before any training; a resume
with another config stops before anything changes; one run per workdir; one metrics record per
step; run metadata only from a run that started.
"""

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attn.data import CharTokenizer, load_tokenizer
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


def records(workdir: Path) -> list[tuple[int, str]]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(json.loads(line)["step"], json.loads(line)["split"]) for line in lines]


def test_resume_with_another_model_is_refused_before_anything_changes(tmp_path):
    workdir = tmp_path / "run"
    config = dates_smoke(tmp_path / "data")
    train_and_evaluate(config, str(workdir))
    saved = (workdir / "config.json").read_text()
    changed = dates_smoke(tmp_path / "data")
    changed.model.overrides.num_heads = 2  # same parameter shapes: would resume silently
    changed.optimizer.learning_rate = 0.5
    changed.num_train_steps = 3  # may change
    message = (
        r"trained with another config: model.overrides.num_heads None -> 2; "
        r"optimizer.learning_rate 0.003 -> 0.5\. Use a new --workdir"
    )
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(changed, str(workdir))
    assert (workdir / "config.json").read_text() == saved
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]


def test_a_run_saved_before_a_config_field_existed_resumes_while_it_keeps_its_default(tmp_path):
    workdir = tmp_path / "run"
    config = dates_smoke(tmp_path / "data")
    train_and_evaluate(config, str(workdir))
    saved = json.loads((workdir / "config.json").read_text())
    del saved["dataset"]["symbols"], saved["loss"]["reinforce_baseline_decay"]
    (workdir / "config.json").write_text(json.dumps(saved))
    config.num_train_steps = 3
    assert train_and_evaluate(config, str(workdir)).step == 3
    changed = dates_smoke(tmp_path / "data")
    changed.num_train_steps = 4
    changed.loss.reinforce_baseline_decay = 0.5  # not the default: not what that run did
    (workdir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"loss.reinforce_baseline_decay None -> 0.5\. Use"):
        train_and_evaluate(changed, str(workdir))


def test_metrics_have_one_record_per_step_after_a_resume(tmp_path):
    """A crash after step 2 with the checkpoint of step 1 on disk: the resumed run rewrites
    the records of step 2 instead of adding a second copy."""
    workdir = tmp_path / "run"
    config = dates_smoke(tmp_path / "data")
    config.checkpoint_every_steps = 1
    train_and_evaluate(config, str(workdir))
    shutil.rmtree(workdir / "checkpoints" / "2")  # as if killed before that save
    train_and_evaluate(config, str(workdir))
    assert records(workdir) == [(1, "train"), (2, "train"), (2, "eval")]


def test_num_train_steps_below_the_checkpoint_step_is_one_line(tmp_path):
    workdir = tmp_path / "run"
    config = dates_smoke(tmp_path / "data")
    train_and_evaluate(config, str(workdir))  # ends with the checkpoint of step 2
    fewer = dates_smoke(tmp_path / "data")
    fewer.num_train_steps = 1
    with pytest.raises(ValueError, match=r"num_train_steps=1 is below step 2 of the checkpoint"):
        train_and_evaluate(fewer, str(workdir))


def test_second_run_on_a_live_workdir_stops_naming_the_holder(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    with open(workdir / ".lock", "w") as holder:
        holder.write("12345")
        holder.flush()
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=r"another run \(process 12345\) is using --workdir"):
            train_and_evaluate(dates_smoke(tmp_path / "data"), str(workdir))
    assert not (workdir / "checkpoints").exists()


def test_stale_metadata_of_a_failed_start_is_neither_reused_nor_left(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    CharTokenizer("xyz").save(workdir / "tokenizer.json")  # another dataset's alphabet
    config = dates_smoke(tmp_path / "data")
    config.model.overrides.model_dim = 7  # not divisible by the heads: fails at start-up
    with pytest.raises(ValueError):
        train_and_evaluate(config, str(workdir))
    assert not (workdir / "config.json").exists()
    result = train_and_evaluate(dates_smoke(tmp_path / "data"), str(workdir))
    assert result.finished
    assert load_tokenizer(workdir / "tokenizer.json").vocab_size > CharTokenizer("xyz").vocab_size
    assert json.loads((workdir / "config.json").read_text())["dataset"]["name"] == "dates"
