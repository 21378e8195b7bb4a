"""The training loop under faults: a checkpoint directory that cannot be written ends the program
at once with one line; checkpoints are saved before the evaluation of the same step; what can be
checked at start-up (a beam wider than the vocabulary) is checked before any training; a resume
with another config stops before anything changes; one run per workdir; one metrics record per
step; run metadata only from a run that started.
"""

import ctypes
import errno
import fcntl
import importlib.util
import json
import os
import shutil
import socket
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(count: int, workdir: Path, data_dir: Path) -> list[dict]:
    """Run `sharded_data_check.py` as `count` processes joined over loopback; their JSON lines."""
    address = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    script = Path(__file__).with_name("sharded_data_check.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), address, str(i), str(count), str(workdir), str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(count)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=400)  # a hang in a collective fails here
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


def test_two_processes_train_on_disjoint_rows_and_evaluate_as_one(tmp_path):
    """Two processes split every global batch: disjoint training rows that together are the
    single process's batches, and the evaluation of 7 examples (4 + 3, padded) equals the
    single-process one."""
    (single,) = _run_processes(1, tmp_path / "one", tmp_path / "data")
    first, second = _run_processes(2, tmp_path / "two", tmp_path / "data")
    assert len(first["train_rows"]) == len(second["train_rows"]) == 2
    for step, rows in enumerate(single["train_rows"]):
        mine, theirs = first["train_rows"][step], second["train_rows"][step]
        assert len(mine) == len(theirs) == 4
        assert not set(mine) & set(theirs)
        assert sorted(mine + theirs) == sorted(rows)
    assert first["eval"] == second["eval"]
    assert first["eval"].keys() == single["eval"].keys()
    for name, value in single["eval"].items():
        assert first["eval"][name] == pytest.approx(value, rel=1e-6), name


def _without_file_permission_override():
    """preexec_fn: drop root's power to ignore file permissions (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH) from the bounding set, so that the child obeys a read-only mode."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_workdir_is_one_line_and_keeps_its_files(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    (workdir / "metrics.jsonl").chmod(0o444)
    workdir.chmod(0o555)
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(workdir / 'probe')!r}, 'w')"],
        preexec_fn=_without_file_permission_override,
        capture_output=True,
    )
    if probe.returncode == 0:
        pytest.skip("cannot make a directory read-only for this user (root without CAP_SETPCAP)")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments/train.py"), "--config",
         str(ROOT / "experiments/configs/dates.py:smoke"), f"--workdir={workdir}",
         f"--config.dataset.data_dir={tmp_path / 'data'}"],
        env=env, capture_output=True, text=True, timeout=300,
        preexec_fn=_without_file_permission_override,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --workdir {workdir} is not writable"), last
    assert sorted(p.name for p in workdir.iterdir()) == ["metrics.jsonl"]
    assert (workdir / "metrics.jsonl").read_text().count("\n") == 1


def test_workdir_that_is_a_file_is_one_line_and_keeps_it(tmp_path):
    workdir = tmp_path / "run"
    workdir.write_text("notes")
    with pytest.raises(ValueError, match=rf"^--workdir {workdir} is a file, not a directory"):
        train_and_evaluate(dates_smoke(tmp_path / "data"), str(workdir))
    assert workdir.read_text() == "notes"


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_full_disk_is_one_line_twice_and_keeps_the_checkpoints(tmp_path):
    """A finished run copied onto a full 16 MB tmpfs (in a private mount namespace) and resumed
    for 2 more steps, twice: each try ends at once with one line naming the full disk and the
    path (before the fix: about 1,000 lines of orbax tracebacks, and on the second try a
    TensorBoard OSError in their place), and the checkpoint of step 2 stays as it was."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = f"mount -t tmpfs -o size=16m tmpfs {disk}"
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True).returncode
    ):
        pytest.skip("cannot mount a small tmpfs here (needs unshare -m and CAP_SYS_ADMIN)")
    train_and_evaluate(dates_smoke(tmp_path / "data"), str(tmp_path / "first"))
    out = tmp_path / "out"
    out.mkdir()
    train = (
        f"{sys.executable} {ROOT / 'experiments/train.py'} --config "
        f"{ROOT / 'experiments/configs/dates.py:smoke'} --workdir={disk / 'run'} "
        f"--config.dataset.data_dir={tmp_path / 'data'} --config.num_train_steps=4 "
        "--config.checkpoint_every_steps=1"
    )
    script = f"""
        {mount} || exit 90
        cp -a {tmp_path / "first"} {disk / "run"}
        dd if=/dev/zero of={disk / "filler"} bs=4k 2>/dev/null  # until the disk is full
        for try in 1 2; do
            start=$(date +%s)
            timeout 300 {train} 2> {out}/stderr$try; echo $? > {out}/rc$try
            echo $(( $(date +%s) - start )) > {out}/seconds$try
        done
        cp -a {disk / "run" / "checkpoints"} {out / "checkpoints"}
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, timeout=700)
    assert result.returncode == 0
    for attempt in (1, 2):
        stderr = (out / f"stderr{attempt}").read_text()
        assert (out / f"rc{attempt}").read_text().strip() == "1", stderr[-3000:]
        # Not buried: no report of orbax, TensorBoard or tensorstore's threads (before the fix of
        # the last: up to 200 lines of "Event loop is closed" tracebacks), only the one line.
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr[-3000:]
        last = lines[-1]
        assert last.startswith("error: no space left on device"), last
        assert str(disk / "run") in last, last
        assert int((out / f"seconds{attempt}").read_text()) < 200
    # Beside it only the failed save's `3.orbax-checkpoint-tmp`, which a resume ignores.
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    first = _tree_bytes(tmp_path / "first" / "checkpoints" / "2")
    assert _tree_bytes(out / "checkpoints" / "2") == first


def test_closing_the_writers_after_a_full_disk_keeps_its_error(tmp_path, monkeypatch):
    """The write that fails first is the error reported, not the TensorBoard writer's close
    that fails on the same full disk (what a full disk gave without a tmpfs to fill)."""

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run"))

    def full_on_close(self):
        raise OSError(errno.ENOSPC, "No space left on device (closing the event file)")

    monkeypatch.setattr(loop.MetricWriter, "write", full)
    monkeypatch.setattr(loop.MetricWriter, "close", full_on_close)
    with pytest.raises(OSError, match=r"No space left on device") as raised:
        train_and_evaluate(dates_smoke(tmp_path / "data"), str(tmp_path / "run"))
    assert raised.value.filename == str(tmp_path / "run")
