"""The training loop end to end, through `experiments/train.py` in subprocesses: a run killed
with SIGKILL and resumed, then stopped with SIGTERM and resumed, ends bit-identical to an
uninterrupted run; a truncated latest checkpoint falls back to the previous one; a NaN loss stops
the run naming a checkpoint that resumes.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Long enough (about 2 s of steps after each kill on a fast machine) for the signals to arrive
# before the run ends.
STEPS, EVERY = 64, 8
FLAGS = [
    "--config",
    str(ROOT / "experiments/configs/dates.py:smoke"),
    f"--config.num_train_steps={STEPS}",
    "--config.batch_size=32",
    f"--config.checkpoint_every_steps={EVERY}",
    "--config.keep_checkpoints=100",
    f"--config.log_every_steps={EVERY}",
    f"--config.eval_every_steps={STEPS // 2}",
    "--config.eval.num_attention_maps=1",
    "--config.model.overrides.dropout_rate=0.1",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    return root, {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "PYTHONPATH": str(ROOT),
    }


def command(root: Path, workdir: Path, *extra: str) -> list[str]:
    data = f"--config.dataset.data_dir={root / 'data'}"
    return [sys.executable, str(ROOT / "experiments/train.py"), *FLAGS, data, *extra,
            f"--workdir={workdir}"]  # fmt: skip


def train(env, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    root, environ = env
    return subprocess.run(
        command(root, workdir, *extra), env=environ, capture_output=True, text=True, timeout=600
    )


def start(env, workdir: Path) -> subprocess.Popen:
    root, environ = env
    return subprocess.Popen(
        command(root, workdir),
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return (
        sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit()) if folder.exists() else []
    )


def wait_for_checkpoint(process: subprocess.Popen, workdir: Path, after: int) -> None:
    """Return once a checkpoint later than `after` is on disk (the process still running)."""
    deadline = time.monotonic() + 600
    while not [s for s in checkpoint_steps(workdir) if s > after]:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def final_state(workdir: Path, step: int = STEPS) -> list[np.ndarray]:
    restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    return [np.asarray(leaf) for leaf in jax.tree.leaves(restored)]


def last_records(workdir: Path) -> dict[str, dict]:
    records = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("steps_per_second", None)
        records[record["split"]] = record
    return records


@pytest.fixture(scope="module")
def uninterrupted(env):
    workdir = env[0] / "uninterrupted"
    result = train(env, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished at step" in result.stdout
    return workdir


def assert_same_run(workdir: Path, reference: Path) -> None:
    for got, expected in zip(final_state(workdir), final_state(reference), strict=True):
        np.testing.assert_array_equal(got, expected)
    records, expected = last_records(workdir), last_records(reference)
    assert records["eval"]["step"] == records["train"]["step"] == STEPS
    assert records == expected


def test_kill_then_sigterm_then_resume_is_bit_identical(env, uninterrupted):
    workdir = env[0] / "interrupted"
    # 1. SIGKILL once the first checkpoint is on disk.
    process = start(env, workdir)
    wait_for_checkpoint(process, workdir, after=0)
    process.kill()
    process.wait()
    killed_at = checkpoint_steps(workdir)[-1]
    assert killed_at < STEPS
    # 2. Resume; SIGTERM once it has saved a newer checkpoint: it saves and exits with 0.
    process = start(env, workdir)
    wait_for_checkpoint(process, workdir, after=killed_at)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped at step" in stderr
    assert "stopped by SIGTERM at step" in stdout  # the signal's name, not its number
    stopped_at = checkpoint_steps(workdir)[-1]
    assert killed_at < stopped_at < STEPS
    assert f"resumed from the checkpoint of step {killed_at}" in stdout
    # 3. Resume to the end.
    result = train(env, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from the checkpoint of step {stopped_at}" in result.stdout
    assert_same_run(workdir, uninterrupted)


def test_truncated_latest_checkpoint_falls_back_to_previous(env, uninterrupted):
    workdir = env[0] / "truncated"
    shutil.copytree(uninterrupted, workdir)
    for path in (workdir / "checkpoints" / str(STEPS) / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    result = train(env, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from the checkpoint of step {STEPS - EVERY}" in result.stdout
    assert_same_run(workdir, uninterrupted)


def test_nan_loss_stops_with_a_checkpoint_that_resumes(env):
    """The loss of step s is that of the parameters before update s: with a checkpoint every step,
    the one of step s - 1 is not good; the error names the one before, and resuming from it
    trains again up to the same non-finite loss."""
    workdir = env[0] / "nan"
    flags = [
        "--config.optimizer.learning_rate=1e38",
        "--config.optimizer.warmup_steps=4",  # lr 0 at update 1, 2.5e37 at update 2
        "--config.optimizer.grad_clip_norm=0",
        "--config.checkpoint_every_steps=1",
    ]
    for resumed in (False, True):
        result = train(env, workdir, *flags)
        assert result.returncode == 1, result.stderr[-3000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: training loss is nan at step 3"), last
        assert "last good checkpoint (step 1)" in last
        assert checkpoint_steps(workdir) == [1]
        assert ("resumed from the checkpoint of step 1" in result.stdout) == resumed
