"""Device mesh, logical-axis rules and the sharding plan of every model's parameters.

A parameter of shape (d_1, …, d_r) gets logical axis names (a_1, …, a_r) from its path and rank
(`PARAM_AXES`, first match wins); the rules table maps each logical name to mesh axes, and the
mesh spec of the parameter is P(rules[a_1], …, rules[a_r]): the logical-axis annotation of GSPMD
(Xu et al. 2021), with FSDP as in ZeRO-3 (Rajbhandari et al. 2020: parameters, gradients and
optimizer state split over the data-parallel devices) and tensor parallelism as in Megatron-LM
(Shoeybi et al. 2019: attention heads and the MLP hidden units split, the second matmul of each
pair reduced). `jax.jit` inserts the collectives, so the same code runs on one device or a mesh.

The mesh always has the axes ("data", "fsdp", "tensor") in this order (tensor innermost, on the
fastest links); one axis may be -1 = the rest of the devices. With `DEFAULT_RULES`:

  data parallel   {"data": -1}                   every parameter replicated, batch over data
  FSDP            {"data": 2, "fsdp": -1}        "embed" (D) sharded over fsdp, batch over data·fsdp
  tensor parallel {"data": 2, "tensor": -1}      "heads" (N·H), "mlp" (F), "vocab" (V) over tensor

Axes of size 1 shard nothing, so one table serves every mesh. A dimension that does not divide the
product of its mesh axes raises a ValueError naming the parameter, the dimension and both sizes;
nothing is silently replicated. Parameters no entry of `PARAM_AXES` matches are replicated and
logged (and marked "(no rule)" in the plan).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical name → mesh axis, tuple of mesh axes, or None (replicated).
DEFAULT_RULES: Mapping[str, str | tuple[str, ...] | None] = {
    "batch": BATCH_AXES,
    "embed": "fsdp",
    "heads": "tensor",
    "mlp": "tensor",
    "vocab": "tensor",
    "norm": None,
    "position": None,
    "classes": None,
}

# (regular expression searched at the end of the parameter path, logical axes). The path joins the
# keys with "/" (e.g. "blocks/3/self_attention/query/kernel"); optimizer states that mirror the
# parameters (Adam's mu and nu under "opt_state/…/mu/…") match the same entries. A rule applies
# only when its number of axes equals the parameter's rank.
PARAM_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    # Attention (attn.layers.MultiHeadAttention): query [D, N·H], key/value [Dc, K·H], out [N·H, D].
    (r"(^|/)(query|key|value)/kernel", ("embed", "heads")),
    (r"(^|/)(query|key|value)/bias", ("heads",)),
    (r"attention/out/kernel", ("heads", "embed")),
    (r"attention/out/bias", ("embed",)),
    (r"attention/score_\w+", (None, None)),
    (r"attention/score_\w+", (None, None, None)),
    # Feed-forward and gated units (attn.layers.feedforward / gating): [D, F] then [F, D].
    (r"(mlp|ffn|feedforward)/(input_proj|gate_proj|up_proj)/kernel", ("embed", "mlp")),
    (r"(mlp|ffn|feedforward)/(input_proj|gate_proj|up_proj)/bias", ("mlp",)),
    (r"(mlp|ffn|feedforward)/(output_proj|down_proj)/kernel", ("mlp", "embed")),
    (r"(mlp|ffn|feedforward)/(output_proj|down_proj)/bias", ("embed",)),
    (r"(glu|gated\w*)/(value_proj|gate_proj)/kernel", ("embed", "mlp")),
    (r"(glu|gated\w*)/(value_proj|gate_proj)/bias", ("mlp",)),
    # Token embeddings [V, D] and vocabulary projections [D, V] (lm_head, Transformer output_proj,
    # Bert's tied-or-not masked-LM decoder and its output bias [V]).
    (r"(token_embedding|source_embedding|target_embedding|word)/embedding", ("vocab", "embed")),
    (r"(^|/)(lm_head|output_proj|mlm_head/decoder)/kernel", ("embed", "vocab")),
    (r"(^|/)(lm_head|output_proj|mlm_head/decoder)/bias", ("vocab",)),
    (r"(^|/)mlm_head/bias", ("vocab",)),
    # Learned positions [L, D], token types [types, D], relative position bias [buckets, N].
    (r"position\w*/embedding", ("position", "embed")),
    (r"token_type/embedding", (None, "embed")),
    (r"relative\w*/embedding", (None, None)),
    # Norms: scale and bias [D].
    (r"norm\w*/(scale|bias)", ("norm",)),
    # D → D transforms (Bert's pooler and masked-LM transform, ViT pre-logits [D, R]).
    (r"(pooler|transform|pre_logits)/kernel", ("embed", None)),
    (r"(pooler|transform|pre_logits)/bias", (None,)),
    # Classification heads [D or R, classes].
    (r"(classifier|head)/kernel", (None, "classes")),
    (r"(classifier|head)/bias", ("classes",)),
    # ViT: patch convolution [p, p, C, D], class token [1, 1, D].
    (r"patch_embedding/kernel", (None, None, None, "embed")),
    (r"patch_embedding/bias", ("embed",)),
    (r"class_token", (None, None, "embed")),
    # Recurrent models (attn.models.seq2seq_rnn) run their recurrence step by step: the cells
    # [E or H, 4H], the bridges and the Bahdanau / Luong weights are replicated (data parallel).
    (r"cells/\d+/\w*kernel", (None, None)),
    (r"cells/\d+/\w*bias", (None,)),
    (r"(bridge|cell_bridge|combine)/kernel", (None, None)),
    (r"(bridge|cell_bridge|combine)/bias", (None,)),
    (r"attention/(W|W_q|W_k)", (None, None)),
    (r"attention/v", (None,)),
    # ConvS2S (attn.models.conv): convolutions [k, D, 2D] and the D-wide projections shard their
    # input width like the other [D, ·] matrices; the dilated causal stack [k, R, 2R] is replicated.
    (r"(encoder|decoder)_convs/\d+/kernel", (None, "embed", None)),
    (r"(encoder|decoder)_convs/\d+/bias", (None,)),
    (
        r"(encoder_in|encoder_out|decoder_in|decoder_out|attention_(in|out)/\d+)/kernel",
        ("embed", None),
    ),
    (r"(encoder_in|encoder_out|decoder_in|decoder_out|attention_(in|out)/\d+)/bias", (None,)),
    (r"convs/\d+/kernel", (None, None, None)),
    (r"convs/\d+/bias", (None,)),
    # Scalars (optimizer step counters, schedules' counts) are replicated.
    (r".*", ()),
)


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh with axes ("data", "fsdp", "tensor") of the given sizes, -1 = the rest of the devices.

    Axes have `AxisType.Auto`, so un-annotated model code compiles under `jax.jit`.

    Args:
      shape: axis name → size, e.g. {"data": -1, "fsdp": 1, "tensor": 1}; missing axes are 1, at
        most one axis is -1, and the product must equal the number of devices.
      devices: the devices to lay out (default: all of `jax.devices()`, every process).

    Returns:
      A `jax.sharding.Mesh` of shape (data, fsdp, tensor).
    """
    if not isinstance(shape, Mapping):
        raise TypeError(f"shape must be a mapping like {{'data': -1}}, got {type(shape).__name__}")
    unknown = sorted(set(shape) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"shape has unknown mesh axes {unknown}; the axes are {MESH_AXES}")
    devices = list(jax.devices() if devices is None else devices)
    sizes = [shape.get(name, 1) for name in MESH_AXES]
    for name, size in zip(MESH_AXES, sizes, strict=True):
        if not isinstance(size, int) or isinstance(size, bool) or (size < 1 and size != -1):
            raise ValueError(f"shape[{name!r}] must be a positive int or -1, got {size!r}")
    if sizes.count(-1) > 1:
        raise ValueError(f"shape may have at most one axis of size -1, got {dict(shape)}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"shape {dict(shape)}: the fixed axes ({known} devices) do not divide the "
                f"{len(devices)} devices"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"shape {dict(shape)} needs {math.prod(sizes)} devices, but there are {len(devices)}"
        )
    return jax.make_mesh(
        tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def path_name(path: Sequence[Any]) -> str:
    """The "/"-joined name of a pytree key path ("blocks/0/mlp/input_proj/kernel").

    Args:
      path: a key path from `jax.tree_util.tree_flatten_with_path`; the `.value` attribute of
        `nnx.Variable` leaves is dropped.

    Returns:
      The path as a string.
    """
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    while parts and parts[-1] in ("value", "raw_value"):
        parts.pop()
    return "/".join(parts)


def _leaf_axes(name: str, shape: tuple[int, ...]) -> tuple[tuple[str | None, ...], bool]:
    """Logical axes of one leaf and whether a specific rule (not the fallback) matched."""
    for pattern, axes in PARAM_AXES:
        if len(axes) == len(shape) and re.search(f"(?:{pattern})$", name):
            return axes, True
    return (None,) * len(shape), False


def logical_axes(tree: Any) -> Any:
    """Logical axis names of every leaf of a parameter (or optimizer-state) tree.

    Args:
      tree: a pytree of arrays (`nnx.State`, nested dicts, optax states) whose key paths name the
        parameters as the attn models do.

    Returns:
      The same tree with a `PartitionSpec` of logical names (or None) per leaf; leaves that no
      rule of `PARAM_AXES` matches are fully replicated (all None) and logged.
    """

    def axes(path, leaf):
        name = path_name(path)
        shape = tuple(np.shape(leaf))
        result, matched = _leaf_axes(name, shape)
        if not matched:
            logger.info("no sharding rule for %s %s: replicated", name, shape)
        return PartitionSpec(*result)

    return jax.tree_util.tree_map_with_path(axes, tree)


def _check_mesh(mesh: Any) -> None:
    if not isinstance(mesh, Mesh | AbstractMesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh or AbstractMesh, got {type(mesh).__name__}"
        )


def _check_rules(rules: Mapping[str, Any], mesh: Mesh) -> None:
    if not isinstance(rules, Mapping):
        raise TypeError(f"rules must be a mapping logical name → mesh axes, got {type(rules)}")
    for logical, axes in rules.items():
        for axis in (axes,) if isinstance(axes, str) else (axes or ()):
            if axis not in mesh.axis_names:
                raise ValueError(
                    f"rules[{logical!r}] names mesh axis {axis!r}, which is not one of the mesh "
                    f"axes {mesh.axis_names}"
                )


def _mesh_spec(
    name: str,
    shape: tuple[int, ...],
    axes: Sequence[str | None],
    mesh: Mesh | AbstractMesh,
    rules: Mapping[str, Any],
) -> PartitionSpec:
    """Mesh spec of one leaf; raises ValueError where a dimension does not divide its axes."""
    spec, used = [], set()
    for dim, (size, logical) in enumerate(zip(shape, axes, strict=True)):
        mesh_axes = rules.get(logical) if logical is not None else None
        if mesh_axes is None:
            spec.append(None)
            continue
        mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
        mesh_axes = tuple(a for a in mesh_axes if mesh.shape[a] > 1)
        if not mesh_axes:
            spec.append(None)
            continue
        clash = used.intersection(mesh_axes)
        if clash:
            raise ValueError(
                f"parameter {name} {shape}: mesh axis {sorted(clash)} is used by two dimensions; "
                "change the rules so that each mesh axis shards one dimension"
            )
        used.update(mesh_axes)
        ways = math.prod(mesh.shape[a] for a in mesh_axes)
        if size % ways:
            sizes = " x ".join(f"{a}={mesh.shape[a]}" for a in mesh_axes)
            raise ValueError(
                f"parameter {name} of shape {shape}: dimension {dim} (logical axis {logical!r}) "
                f"has size {size}, which is not divisible by mesh axis {sizes}"
            )
        spec.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return PartitionSpec(*spec)


def param_shardings(
    tree: Any, mesh: Mesh | AbstractMesh, rules: Mapping[str, Any] | None = None
) -> Any:
    """A `NamedSharding` for every leaf of a parameter or optimizer-state tree.

    spec(leaf) = P(rules[a_1], …, rules[a_r]) for the logical axes (a_1, …, a_r) of the leaf
    (`logical_axes`); mesh axes of size 1 are dropped from the spec.

    Args:
      tree: pytree of arrays or `jax.ShapeDtypeStruct`s (`nnx.State`, dicts, optax states).
      mesh: the device mesh (`make_mesh`), or an `AbstractMesh` to plan without devices.
      rules: logical name → mesh axis / tuple of mesh axes / None; default `DEFAULT_RULES`.

    Returns:
      The same tree with a `jax.sharding.NamedSharding` per leaf.

    Raises:
      ValueError: naming the parameter path, the dimension, its size and the mesh axis size when
        a dimension is not divisible by its mesh axes, or when rules name an unknown mesh axis.
    """
    _check_mesh(mesh)
    rules = DEFAULT_RULES if rules is None else rules
    _check_rules(rules, mesh)

    def sharding(path, leaf):
        name = path_name(path)
        shape = tuple(np.shape(leaf))
        axes, _ = _leaf_axes(name, shape)
        return NamedSharding(mesh, _mesh_spec(name, shape, axes, mesh, rules))

    return jax.tree_util.tree_map_with_path(sharding, tree)


def batch_sharding(
    mesh: Mesh | AbstractMesh, rules: Mapping[str, Any] | None = None
) -> NamedSharding:
    """Sharding of a batch: the leading dimension B over rules["batch"] (data x fsdp), rest whole.

    Args:
      mesh: the device mesh.
      rules: as in `param_shardings`; default `DEFAULT_RULES`.

    Returns:
      NamedSharding(mesh, P(("data", "fsdp"))) with the axes of size 1 dropped.
    """
    _check_mesh(mesh)
    rules = DEFAULT_RULES if rules is None else rules
    _check_rules(rules, mesh)
    axes = rules.get("batch")
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    axes = tuple(a for a in axes if mesh.shape[a] > 1)
    return NamedSharding(mesh, PartitionSpec(axes if axes else None))


def shard(tree: Any, shardings: Any) -> Any:
    """Place every leaf of `tree` with the matching sharding (`jax.device_put`).

    Args:
      tree: pytree of arrays (e.g. `nnx.state(model)`).
      shardings: the same tree of `jax.sharding.Sharding`s (`param_shardings`), or one sharding
        for all leaves.

    Returns:
      The tree of placed `jax.Array`s.
    """
    if not isinstance(shardings, jax.sharding.Sharding):
        tree_def, shard_def = jax.tree.structure(tree), jax.tree.structure(shardings)
        if tree_def.num_leaves != shard_def.num_leaves:
            raise ValueError(
                f"shardings must have one sharding per leaf of tree: {shard_def.num_leaves} "
                f"shardings for {tree_def.num_leaves} leaves"
            )
    return jax.device_put(tree, shardings)


def shard_batch(batch: Any, sharding: NamedSharding) -> Any:
    """Assemble a global batch from this process's rows: leading dimension B over `sharding`.

    Each process passes its own B / process_count rows; on one process this is `device_put`.

    Args:
      batch: pytree of host arrays with leading dimension B_local (the rows of this process).
      sharding: `batch_sharding(mesh)`.

    Returns:
      The pytree of global `jax.Array`s with leading dimension B_local · process_count.

    Raises:
      ValueError: when the global B is not divisible by the number of batch shards.
    """
    if not isinstance(sharding, NamedSharding):
        raise TypeError(
            f"sharding must be a NamedSharding (from batch_sharding), got {type(sharding).__name__}"
        )
    entry = sharding.spec[0] if len(sharding.spec) else None
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    ways = math.prod(sharding.mesh.shape[a] for a in axes)
    axes_text = " x ".join(f"{a}={sharding.mesh.shape[a]}" for a in axes) or "none"

    def place(path, leaf):
        leaf = np.asarray(leaf)
        name = f"batch[{path_name(path)!r}]" if path else "batch"
        if leaf.ndim == 0:
            raise ValueError(f"{name} must have a leading batch dimension B, got a scalar")
        global_rows = leaf.shape[0] * jax.process_count()
        if global_rows % ways:
            raise ValueError(
                f"{name} has global batch size B={global_rows}, which is "
                f"not divisible by the {ways} batch shards (mesh axes {axes_text})"
            )
        return jax.make_array_from_process_local_data(sharding, leaf)

    return jax.tree_util.tree_map_with_path(place, batch)


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
    """`jax.ShapeDtypeStruct`s with the given shardings: a restore target on another mesh.

    Args:
      tree: pytree of arrays or `ShapeDtypeStruct`s (e.g. `nnx.state(nnx.eval_shape(...))`).
      shardings: the same tree of shardings (`param_shardings(tree, mesh)`).

    Returns:
      The tree of `jax.ShapeDtypeStruct(shape, dtype, sharding=...)`.
    """
    return jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype, sharding=s),
        tree,
        shardings,
    )


def plan_table(tree: Any, mesh: Mesh | AbstractMesh, rules: Mapping[str, Any] | None = None) -> str:
    """The sharding plan as a text table, one row per parameter, to print at start-up.

    Columns: path, global shape, logical axes, mesh spec, shape of the shard on one device; the
    last lines give the mesh and the parameter count and bytes in total and per device.

    Args:
      tree: pytree of arrays or `ShapeDtypeStruct`s (e.g. `nnx.state(model, nnx.Param)`).
      mesh: the device mesh.
      rules: as in `param_shardings`; default `DEFAULT_RULES`.

    Returns:
      The table as one string.
    """
    _check_mesh(mesh)
    shardings = param_shardings(tree, mesh, rules)
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    specs = jax.tree.leaves(shardings)
    rows, total, total_bytes, device_bytes = [], 0, 0, 0
    for (path, leaf), sharding in zip(leaves, specs, strict=True):
        name = path_name(path)
        shape = tuple(np.shape(leaf))
        axes, matched = _leaf_axes(name, shape)
        shard_shape = sharding.shard_shape(shape)
        itemsize = np.dtype(leaf.dtype).itemsize
        total += math.prod(shape)
        total_bytes += math.prod(shape) * itemsize
        device_bytes += math.prod(shard_shape) * itemsize
        logical = "(" + ", ".join(str(a) for a in axes) + ")" + ("" if matched else " (no rule)")
        spec = ", ".join(str(s) for s in sharding.spec)
        rows.append((name, str(shape), logical, f"P({spec})", str(shard_shape)))
    header = ("parameter", "shape", "logical axes", "mesh spec", "per device")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    mesh_text = " x ".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names)
    lines.append(
        f"mesh {mesh_text}; {total:,} parameters, {total_bytes / 2**20:.2f} MiB in total, "
        f"{device_bytes / 2**20:.2f} MiB per device"
    )
    return "\n".join(lines)
