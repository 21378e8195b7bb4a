"""`attn.training.checkpoint`: bit-identical round trips of the whole training state (nnx and optax
states, typed PRNG keys, data-iterator state as dict or bytes), keep-N, save intervals, resume,
fallback from a truncated or corrupted latest step, a failed save as one prompt error, and SIGTERM
handling."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from attn.models import TransformerLM, TransformerLMConfig
from attn.training.checkpoint import Checkpointer, CheckpointError
from attn.training.preemption import PreemptionGuard

CONFIG = TransformerLMConfig(
    vocab_size=40, num_layers=1, num_heads=2, model_dim=12, mlp_dim=20, max_length=8
)


def _bits(leaf) -> np.ndarray:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(_bits(x), _bits(y))


@pytest.fixture(scope="module")
def training_state() -> dict:
    """A state after one AdamW step, so moments and counters are not at their initial values."""
    model = TransformerLM(CONFIG, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.Param)

    @nnx.jit
    def update(model, optimizer):
        grads = jax.tree.map(lambda p: jnp.cos(p) + 0.5, nnx.state(model, nnx.Param))
        optimizer.update(model, grads)

    update(model, optimizer)
    params = nnx.state(model, nnx.Param)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    grads = jax.tree.map(jnp.sin, params)
    opt_state = jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[1])(grads, params)
    return {
        "params": params,
        "optimizer": nnx.state(optimizer),
        "opt_state": opt_state,
        "rng": jax.random.split(jax.random.key(5), 3),
        "legacy_rng": jax.random.PRNGKey(9),
        "bf16": jnp.linspace(-3, 3, 7, dtype=jnp.bfloat16),
        "data": {"next_index": 17, "worker": [0, 1], "raw": b"\x00\xffstate"},
        "metrics": {"loss": 2.5},
    }


def test_round_trip_is_bit_identical(tmp_path, training_state):
    with Checkpointer(tmp_path, async_save=True) as ckpt:
        assert ckpt.save(4, training_state)
        ckpt.wait()
    with Checkpointer(tmp_path) as ckpt:
        step, restored = ckpt.restore_latest({**training_state, "data": None, "metrics": None})
    assert step == 4
    for name in ("params", "optimizer", "opt_state", "rng", "legacy_rng", "bf16"):
        assert_identical(restored[name], training_state[name])
    assert isinstance(restored["params"], nnx.State)
    assert isinstance(restored["opt_state"][1][0], optax.ScaleByAdamState)
    assert restored["rng"].dtype == training_state["rng"].dtype
    assert restored["data"] == training_state["data"]
    assert restored["metrics"] == {"loss": 2.5}


def test_restore_from_abstract_targets(tmp_path, training_state):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, training_state)
    abstract_params = nnx.state(
        nnx.eval_shape(lambda: TransformerLM(CONFIG, rngs=nnx.Rngs(1))), nnx.Param
    )
    target = {
        "params": abstract_params,
        "rng": jax.eval_shape(lambda: training_state["rng"]),
    }
    with Checkpointer(tmp_path) as ckpt:
        _, restored = ckpt.restore_latest(target)
    assert set(restored) == {"params", "rng"}
    assert_identical(restored["params"], training_state["params"])
    assert_identical(restored["rng"], training_state["rng"])
    leaf = jax.tree.leaves(restored["params"])[0]
    assert isinstance(leaf, jax.Array) and leaf.sharding.num_devices == 1


def test_data_state_as_bytes_or_numpy_scalars(tmp_path):
    state = {"data": b'{"index": 3}', "grain": {"index": np.int64(2**40)}, "x": jnp.arange(3)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(0, state)
        _, restored = ckpt.restore_latest({"data": None, "grain": None, "x": state["x"]})
    assert restored["data"] == b'{"index": 3}'
    assert restored["grain"] == {"index": 2**40}


def test_keep_n_and_save_interval(tmp_path):
    state = {"x": jnp.zeros(2)}
    with Checkpointer(tmp_path, max_to_keep=2, save_interval_steps=2) as ckpt:
        saved = [ckpt.save(step, {"x": state["x"] + step}) for step in range(1, 8)]
        assert saved == [False, True, False, True, False, True, False]
        assert ckpt.save(7, state, force=True)
        ckpt.wait()
        assert ckpt.all_steps() == [6, 7]
        assert ckpt.latest_step == 7
        assert not ckpt.save(7, {"x": state["x"] - 1}, force=True)  # already on disk
        assert np.array_equal(ckpt.restore(6, state)["x"], [6.0, 6.0])
        assert np.array_equal(ckpt.restore(7, state)["x"], [0.0, 0.0])


def test_restore_of_a_given_step_and_resume_in_a_new_manager(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        for step in (10, 20, 30):
            ckpt.save(step, {"x": jnp.full((2,), float(step)), "data": {"i": step}})
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [10, 20, 30]
        middle = ckpt.restore(20, {"x": jnp.zeros(2), "data": None})
        step, latest = ckpt.restore_latest({"x": jnp.zeros(2), "data": None})
    assert middle["data"] == {"i": 20} and np.array_equal(middle["x"], [20.0, 20.0])
    assert step == 30 and latest["data"] == {"i": 30}


def test_empty_directory_gives_none(tmp_path):
    with Checkpointer(tmp_path / "new") as ckpt:
        assert ckpt.restore_latest({"x": jnp.zeros(2)}) is None
        assert ckpt.latest_step is None


def _damage(step_dir: Path, how: str) -> int:
    """Truncate every file, scramble the data files, or flip one bit of the largest data file (the
    array chunk: orbax reads it without complaint, the fingerprint catches it)."""
    damaged = 0
    files = sorted(step_dir.rglob("*"), key=lambda p: (-p.stat().st_size, str(p)))
    if how == "bitflip":
        files = [next(p for p in files if p.is_file() and p.parent.name == "d")]
    for path in files:
        if not path.is_file() or path.stat().st_size == 0:
            continue
        data = path.read_bytes()
        if how == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif how == "bitflip":
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0x01
            path.write_bytes(bytes(flipped))
        elif how == "corrupt" and path.parent.name == "d":  # bytes of orbax's data files
            flipped = bytearray(data)
            for i in range(0, len(flipped), 7):
                flipped[i] ^= 0x5A
            path.write_bytes(bytes(flipped))
        else:
            continue
        damaged += 1
    return damaged


@pytest.mark.parametrize("how", ["truncate", "corrupt", "bitflip"])
def test_damaged_latest_step_falls_back_to_previous(tmp_path, how, caplog):
    shape = (48, 40)
    target = {"w": jnp.zeros(shape), "rng": jax.random.key(0), "data": None}
    with Checkpointer(tmp_path, max_to_keep=3) as ckpt:
        for step in (1, 2):
            ckpt.save(
                step,
                {
                    "w": jnp.arange(48 * 40.0).reshape(shape) * step,
                    "rng": jax.random.key(step),
                    "data": {"i": step},
                },
            )
    assert _damage(tmp_path / "2" / "w", how) > 0
    with (
        caplog.at_level(logging.WARNING, logger="attn.training.checkpoint"),
        Checkpointer(tmp_path, max_to_keep=3) as ckpt,
    ):
        step, state = ckpt.restore_latest(target)
        assert step == 1
        assert "step 2" in caplog.text and "previous" in caplog.text
        if how == "bitflip":
            assert "fingerprint" in caplog.text
        assert np.array_equal(state["w"], np.arange(48 * 40.0).reshape(shape))
        assert state["data"] == {"i": 1}
        assert_identical(state["rng"], jax.random.key(1))
        # Training resumes from step 1 and writes step 2 again, replacing the damaged one.
        assert ckpt.save(2, {"w": jnp.full(shape, 7.0), "rng": jax.random.key(2), "data": {}})
        step, state = ckpt.restore_latest(target)
    assert step == 2 and np.array_equal(state["w"], np.full(shape, 7.0))


def test_all_steps_unreadable_is_an_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, {"w": jnp.ones(3)})
    _damage(tmp_path / "1" / "w", "truncate")
    with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointError) as raised:
        ckpt.restore_latest({"w": jnp.zeros(3)})
    message = str(raised.value)
    assert "could be restored (step 1: " in message and "\n" not in message  # one line


def test_key_and_array_mismatch_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, {"rng": jax.random.key(0)})
        with pytest.raises(ValueError, match="typed PRNG key"):
            ckpt.restore(1, {"rng": jnp.zeros((2,), jnp.uint32)})
        with pytest.raises(ValueError, match="no checkpoint"):
            ckpt.restore(5, {"rng": jax.random.key(0)})


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path, max_to_keep=0)
    with pytest.raises(ValueError, match="save_interval_steps"):
        Checkpointer(tmp_path, save_interval_steps=0)
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(TypeError, match="state must be a dict"):
            ckpt.save(1, [jnp.ones(2)])
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            ckpt.save(-1, {"x": jnp.ones(2)})
        with pytest.raises(ValueError, match="keys must be identifiers"):
            ckpt.save(1, {"bad name": jnp.ones(2)})
        for reserved in ("prng_key_impls", "fingerprints"):
            with pytest.raises(ValueError, match="keys must be identifiers"):
                ckpt.save(1, {reserved: jnp.ones(2)})


def test_preemption_guard_sets_flag_and_restores_handler():
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with PreemptionGuard() as guard:
            assert not guard.requested
            os.kill(os.getpid(), signal.SIGTERM)
            assert guard.requested
            assert guard.requested_on_any_process()
            assert guard.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is previous
        assert calls == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)
    with pytest.raises(ValueError, match="at least one signal"):
        PreemptionGuard(signals=())


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    script = Path(__file__).with_name("preemption_check.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    step = int(out.split()[-1])
    with Checkpointer(tmp_path) as ckpt:
        restored_step, state = ckpt.restore_latest({"counter": jnp.zeros(3), "data": None})
    assert restored_step == step and state["data"] == {"step": step}
    assert np.array_equal(state["counter"], np.full(3, float(step)))


def test_checkpoint_directory_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "checkpoints").write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot create the checkpoint directory") as info:
        Checkpointer(tmp_path / "checkpoints")
    assert "\n" not in str(info.value)


FAILED_SAVE = """
import os, shutil, sys
import jax.numpy as jnp
from attn.training.checkpoint import CheckpointError, Checkpointer
directory = sys.argv[1]
ckpt = Checkpointer(directory)
shutil.rmtree(directory)
open(directory, "w").close()  # the directory becomes a file: every write fails
try:
    ckpt.save(1, {"x": jnp.ones(3)}, force=True)
    ckpt.wait()
except CheckpointError as error:
    ckpt.close()  # returns at once after the failure
    print(error, flush=True)
    os._exit(3)
"""


def test_failed_background_save_raises_and_close_returns(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", FAILED_SAVE, str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("cannot save the checkpoint of step 1 in "), line
    assert "NotADirectoryError" in line
