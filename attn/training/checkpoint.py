"""Checkpoints of the whole training state with orbax, with fallback on restore.

    checkpoint_s = (θ_s, optimizer state m_s, s, training key, data-iterator position after s)

A checkpoint of step s is the directory `<directory>/<s>/` holding one orbax item per entry of
the state dict: pytrees of arrays (parameters, optimizer state, typed PRNG keys stored as their
`key_data`) as orbax "standard" items, and JSON-able entries (the grain data-iterator state, a
dict or bytes; scalar metrics) as JSON items. Restoring returns every entry bit-identical, so a
resumed run continues exactly as the uninterrupted one. Orbax writes each step into a temporary
directory and renames it when complete, so a crash during a save leaves the previous steps.

Saves are asynchronous: `save` returns once the arrays are copied to host memory and writing goes
on in the background; `wait()` blocks until it is done. The arrays are restored onto the
shardings of the target (`jax.ShapeDtypeStruct(..., sharding=...)` or live arrays), so a
checkpoint written on one mesh restores onto another. A latest step that cannot be read
(truncated or corrupted files, found by orbax or by a fingerprint of every array written with it)
is skipped with a warning and the previous one is restored.

A save that cannot be written (a full disk, a checkpoint directory that is a file) raises
`CheckpointError`, at the save or at the next `save`/`wait`/`close` when the write was in the
background; afterwards `close` returns at once. Orbax leaves threads behind that never finish, so
a program stopping on this error should exit with `os._exit`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from attn.training.sharding import path_name

logger = logging.getLogger(__name__)

_KEYS_ITEM = "prng_key_impls"
_FINGERPRINTS_ITEM = "fingerprints"
_ITEM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BYTES = "__bytes_base64__"


class CheckpointError(OSError):
    """A checkpoint could not be written or none could be read; the message is one line naming
    the step(s) and the directory."""


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _is_json_item(value: Any) -> bool:
    """A state entry without array leaves (dicts of numbers, numpy scalars and strings, bytes,
    None)."""
    return not any(_is_array(leaf) for leaf in jax.tree.leaves(value))


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _encode_json(value: Any) -> Any:
    """JSON-able form of an entry: bytes become {"__bytes_base64__": text}, tuples lists."""
    if isinstance(value, bytes):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): _encode_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        return {k: _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def _nested(paths: Sequence[str], leaves: Sequence[Any], item: str) -> dict:
    """Nested dict {part: {part: leaf}} from "/"-joined paths, the layout stored on disk."""
    root: dict = {}
    for path, leaf in zip(paths, leaves, strict=True):
        node = root
        parts = path.split("/") if path else ["value"]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"state[{item!r}] has two leaves named {path!r}")
        if parts[-1] in node:
            raise ValueError(f"state[{item!r}] has two leaves named {path!r}")
        node[parts[-1]] = leaf
    return root


def _flat_from_nested(nested: Mapping, paths: Sequence[str]) -> list[Any]:
    leaves = []
    for path in paths:
        node: Any = nested
        for part in path.split("/") if path else ["value"]:
            node = node[part]
        leaves.append(node)
    return leaves


def _fingerprint(x: jax.Array) -> jax.Array:
    """Two position-weighted uint32 sums of the bits of `x`: any flipped bit changes the first.

        f_1 = Σ_i b_i · (2i + 1),   f_2 = Σ_i (b_i ⊕ i·φ) · c   (mod 2^32)

    with b_i the i-th 8-, 16- or 32-bit word of the array and φ, c odd constants.
    """
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    words = jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32).reshape(-1)
    i = jnp.arange(words.size, dtype=jnp.uint32)
    first = jnp.sum(words * (2 * i + 1), dtype=jnp.uint32)
    second = jnp.sum(
        (words ^ (i * jnp.uint32(0x9E3779B9))) * jnp.uint32(0x85EBCA6B), dtype=jnp.uint32
    )
    return jnp.stack([first, second])


def _host_words(leaf: Any) -> jax.Array:
    """The bytes of a host (numpy) leaf as uint32 words, so 64-bit values survive `jnp`."""
    data = np.ascontiguousarray(leaf).view(np.uint8).reshape(-1)
    data = np.concatenate([data, np.zeros(-data.size % 4, np.uint8)])
    return jnp.asarray(data.view(np.uint32))


_fingerprints = jax.jit(lambda leaves: [_fingerprint(x) for x in leaves])


def _leaf_fingerprints(leaves: Sequence[Any]) -> list[list[int]]:
    """`_fingerprint` of every leaf, one jitted call per set of devices the leaves live on."""
    leaves = [leaf if isinstance(leaf, jax.Array) else _host_words(leaf) for leaf in leaves]
    groups: dict[frozenset, list[int]] = {}
    for index, leaf in enumerate(leaves):
        groups.setdefault(frozenset(leaf.sharding.device_set), []).append(index)
    result: list[list[int]] = [[] for _ in leaves]
    for indices in groups.values():
        for index, value in zip(indices, _fingerprints([leaves[i] for i in indices]), strict=True):
            result[index] = [int(v) for v in np.asarray(value)]
    return result


def _default_sharding() -> jax.sharding.Sharding:
    """Where a restored leaf without a sharding goes: device 0, or replicated over processes."""
    if jax.process_count() == 1:
        return jax.sharding.SingleDeviceSharding(jax.devices()[0])
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("devices",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


class Checkpointer:
    """Asynchronous, keep-N orbax checkpoints of a training-state dict, with fallback on restore.

    Example:
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=3, save_interval_steps=500)
        restored = ckpt.restore_latest({"params": params, "opt_state": opt_state,
                                        "rng": rng, "data": iterator.get_state()})
        if restored is not None:
            step, state = restored
        ...
        ckpt.save(step, {"params": ..., "opt_state": ..., "rng": ..., "data": ...})
        ckpt.close()

    Args:
      directory: where the step directories live (created if missing).
      max_to_keep: how many of the newest checkpoints to keep (older ones are deleted); None
        keeps all.
      save_interval_steps: `save(step, ...)` writes only when step is a multiple of this (or
        `force=True`).
      async_save: write in a background thread (True) or block in `save` (False).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_to_keep: int | None = 3,
        save_interval_steps: int = 1,
        async_save: bool = True,
    ):
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ValueError(f"max_to_keep must be a positive int or None, got {max_to_keep!r}")
        if not isinstance(save_interval_steps, int) or save_interval_steps < 1:
            raise ValueError(
                f"save_interval_steps must be a positive int, got {save_interval_steps!r}"
            )
        self.directory = Path(directory).absolute()
        self.save_interval_steps = save_interval_steps
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CheckpointError(
                f"cannot create the checkpoint directory {self.directory} "
                f"({type(error).__name__}: {error.strerror or error})"
            ) from None
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            save_interval_steps=save_interval_steps,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._unreadable: set[int] = set()
        self._failure: CheckpointError | None = None
        self._newest_save: int | None = None  # the step of the newest save started

    @property
    def latest_step(self) -> int | None:
        """The newest step completely written (readable or not), or None; does not wait."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps completely written, oldest first; `wait()` first to include pending saves."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Mapping[str, Any], *, force: bool = False) -> bool:
        """Write `state` as the checkpoint of `step` (in the background when async).

        Args:
          step: the training step, >= 0.
          state: entry name → value. Pytrees of arrays (e.g. "params", "opt_state", "rng" with
            typed or raw PRNG keys) are stored as arrays (Python numbers among them come back as
            numpy scalars); entries without arrays (e.g. "data", the grain iterator state as a
            dict or bytes; "metrics" as floats) as JSON.
          force: save even when `step` is not a multiple of `save_interval_steps`.

        Returns:
          Whether a checkpoint was started (False when the step is not due or already saved).

        Raises:
          CheckpointError: this save, or an earlier one still in the background, failed.
        """
        if not isinstance(step, int | np.integer) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        step = int(step)
        self._check_state(state, "state")
        if not force and step % self.save_interval_steps:
            return False
        if step in self._unreadable:
            logger.warning("replacing the unreadable checkpoint of step %d", step)
            self._manager.delete(step)
            self._unreadable.discard(step)
        elif step in self._manager.all_steps():
            logger.info("step %d already has a checkpoint in %s: not saved", step, self.directory)
            return False
        items, key_impls, fingerprints = {}, {}, {}
        for name, value in state.items():
            if _is_json_item(value):
                items[name] = ocp.args.JsonSave(_encode_json(value))
                continue
            flat, _ = jax.tree_util.tree_flatten_with_path(value)
            paths = [path_name(p) for p, _ in flat]
            leaves = []
            for path, leaf in zip(paths, (leaf for _, leaf in flat), strict=True):
                if _is_key(leaf):
                    key_impls.setdefault(name, {})[path] = str(jax.random.key_impl(leaf))
                    leaf = jax.random.key_data(leaf)
                leaves.append(leaf if _is_array(leaf) else np.asarray(leaf))
            items[name] = ocp.args.StandardSave(_nested(paths, leaves, name))
            fingerprints[name] = dict(zip(paths, _leaf_fingerprints(leaves), strict=True))
        items[_KEYS_ITEM] = ocp.args.JsonSave(key_impls)
        items[_FINGERPRINTS_ITEM] = ocp.args.JsonSave(fingerprints)
        with self._failing_as(f"cannot save the checkpoint of step {self._newest_save}"):
            self._manager.wait_until_finished()  # the previous save
        self._newest_save = step
        with self._failing_as(f"cannot save the checkpoint of step {step}"):
            return self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(self, step: int, abstract_state: Mapping[str, Any]) -> dict[str, Any]:
        """Read the checkpoint of `step` into the structure and shardings of `abstract_state`.

        Args:
          step: a step on disk (`all_steps()`).
          abstract_state: entry name → target with the saved structure: arrays or
            `jax.ShapeDtypeStruct`s (their shardings say where the restored arrays go; a
            `ShapeDtypeStruct` without one goes to device 0), typed PRNG keys as keys. JSON
            entries (no arrays) may be anything, e.g. None; they come back as saved. Only the
            named entries are read.

        Returns:
          The state dict, entries of the same tree structure as the targets.
        """
        self._check_state(abstract_state, "abstract_state")
        self._manager.wait_until_finished()
        if step not in self._manager.all_steps():
            raise ValueError(f"step {step} has no checkpoint in {self.directory}")
        metadata = self._manager.restore(
            step,
            args=ocp.args.Composite(
                **{_KEYS_ITEM: ocp.args.JsonRestore(), _FINGERPRINTS_ITEM: ocp.args.JsonRestore()}
            ),
        )
        key_impls, fingerprints = metadata[_KEYS_ITEM], metadata[_FINGERPRINTS_ITEM]
        requests, layouts = {}, {}
        for name, target in abstract_state.items():
            if _is_json_item(target):
                requests[name] = ocp.args.JsonRestore()
                continue
            flat, treedef = jax.tree_util.tree_flatten_with_path(target)
            paths = [path_name(p) for p, _ in flat]
            impls = key_impls.get(name, {})
            abstract = []
            for path, leaf in zip(paths, (leaf for _, leaf in flat), strict=True):
                if _is_key(leaf) != (path in impls):
                    kind = "a typed PRNG key" if path in impls else "an array of numbers"
                    raise ValueError(
                        f"abstract_state[{name!r}] leaf {path!r}: the checkpoint holds {kind}"
                    )
                abstract.append(self._abstract_leaf(leaf))
            layouts[name] = (paths, treedef, impls)
            requests[name] = ocp.args.StandardRestore(_nested(paths, abstract, name))
        restored = self._manager.restore(step, args=ocp.args.Composite(**requests))
        state = {}
        for name in abstract_state:
            if name not in layouts:
                state[name] = _decode_json(restored[name])
                continue
            paths, treedef, impls = layouts[name]
            leaves = _flat_from_nested(restored[name], paths)
            expected = fingerprints.get(name, {})
            for path, found in zip(paths, _leaf_fingerprints(leaves), strict=True):
                if expected.get(path) != found:
                    raise ValueError(
                        f"checkpoint of step {step}: the data of {name}[{path!r}] does not match "
                        "the fingerprint written with it (corrupted files)"
                    )
            leaves = [
                jax.random.wrap_key_data(leaf, impl=impls[path]) if path in impls else leaf
                for path, leaf in zip(paths, leaves, strict=True)
            ]
            state[name] = jax.tree.unflatten(treedef, leaves)
        return state

    def restore_latest(self, abstract_state: Mapping[str, Any]) -> tuple[int, dict] | None:
        """Restore the newest readable checkpoint: resume from the work directory.

        A step whose files are truncated or corrupted is skipped with a warning and the
        previous step is tried; a later `save` of that step replaces it.

        Args:
          abstract_state: as in `restore`.

        Returns:
          (step, state), or None when the directory holds no checkpoint.

        Raises:
          RuntimeError: when checkpoints exist but none of them can be read into the target.
        """
        self._check_state(abstract_state, "abstract_state")
        self._manager.wait_until_finished()
        self._manager.reload()
        steps = sorted(self._manager.all_steps(), reverse=True)
        errors = []
        for step in steps:
            try:
                return step, self.restore(step, abstract_state)
            except Exception as error:  # any unreadable step falls back to the previous one
                first_line = str(error).splitlines()[0] if str(error) else ""
                logger.warning(
                    "checkpoint of step %d in %s cannot be restored (%s: %s); trying the "
                    "previous one",
                    step,
                    self.directory,
                    type(error).__name__,
                    first_line,
                )
                self._unreadable.add(step)
                errors.append(f"step {step}: {type(error).__name__}: {first_line}")
        if errors:
            raise CheckpointError(
                f"no checkpoint in {self.directory} could be restored ({'; '.join(errors)}); "
                "move them away to start over, or use a new --workdir"
            )
        return None

    def delete(self, step: int) -> None:
        """Remove the checkpoint of `step` (after the background saves are written)."""
        self.wait()
        if step not in self._manager.all_steps():
            raise ValueError(f"step {step} has no checkpoint in {self.directory}")
        self._manager.delete(step)

    def wait(self) -> None:
        """Block until the background saves are written.

        Raises:
          CheckpointError: a background save failed.
        """
        with self._failing_as(f"cannot save the checkpoint of step {self._newest_save}"):
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish the background saves and release the manager; returns at once after a failed
        save.

        Raises:
          CheckpointError: a background save failed.
        """
        if self._failure is not None:
            return
        self.wait()
        self._manager.close()

    @contextlib.contextmanager
    def _failing_as(self, what: str):
        """Turn an orbax error into a one-line `CheckpointError`, remembered by `close`."""
        if self._failure is not None:
            raise self._failure
        try:
            yield
        except Exception as error:
            lines = str(error).strip().splitlines()
            self._failure = CheckpointError(
                f"{what} in {self.directory} ({type(error).__name__}: {lines[-1] if lines else ''})"
            )
            raise self._failure from None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _abstract_leaf(leaf: Any) -> Any:
        """The orbax restore target of one leaf: shape, dtype and sharding (key_data for keys)."""
        if not isinstance(leaf, jax.Array | jax.ShapeDtypeStruct):  # numpy and Python numbers
            leaf = np.asarray(leaf)
            return np.zeros(leaf.shape, leaf.dtype)
        sharding = getattr(leaf, "sharding", None) or _default_sharding()
        if _is_key(leaf):
            data = jax.eval_shape(jax.random.key_data, leaf)
            if isinstance(sharding, jax.sharding.NamedSharding):
                spec = jax.sharding.PartitionSpec(*sharding.spec, None)
                sharding = jax.sharding.NamedSharding(sharding.mesh, spec)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    @staticmethod
    def _check_state(state: Any, argument: str) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{argument} must be a dict entry name → pytree, got {type(state).__name__}"
            )
        reserved = (_KEYS_ITEM, _FINGERPRINTS_ITEM)
        for name in state:
            if not isinstance(name, str) or not _ITEM_NAME.fullmatch(name) or name in reserved:
                raise ValueError(
                    f"{argument} keys must be identifiers other than {reserved} "
                    f"(like 'params'), got {name!r}"
                )
