"""`attn.training.sharding`: logical axes of every model family, mesh specs and clear errors (on
abstract meshes, in this process), and training on 8 fake CPU devices under data-parallel, FSDP and
tensor-parallel meshes with losses equal to one device, parameters sharded as planned and a
checkpoint moving between meshes (in a subprocess, `multidevice_check.py`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, AxisType
from jax.sharding import PartitionSpec as P

from attn.models import (
    Bert,
    BertConfig,
    Transformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
    ViT,
    ViTConfig,
)
from attn.training import sharding

SCRIPT = Path(__file__).with_name("multidevice_check.py")


def abstract_mesh(data=1, fsdp=1, tensor=1) -> AbstractMesh:
    return AbstractMesh((data, fsdp, tensor), sharding.MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def abstract_params(model_cls, config) -> nnx.State:
    return jax.eval_shape(lambda: nnx.state(model_cls(config, rngs=nnx.Rngs(0)), nnx.Param))


def flat(tree) -> dict:
    return {
        sharding.path_name(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


FAMILIES = {
    "lm": (
        TransformerLM,
        TransformerLMConfig(
            vocab_size=48,
            num_layers=1,
            num_heads=4,
            num_kv_heads=2,
            model_dim=16,
            mlp_dim=24,
            max_length=8,
            tie_embeddings=False,
        ),
    ),
    "transformer": (
        Transformer,
        TransformerConfig(
            vocab_size=48,
            num_encoder_layers=1,
            num_decoder_layers=1,
            num_heads=4,
            model_dim=16,
            mlp_dim=24,
            max_length=8,
            share_embeddings=False,
            tie_output=False,
        ),
    ),
    "bert": (
        Bert,
        BertConfig(
            vocab_size=48,
            num_layers=1,
            num_heads=4,
            model_dim=16,
            mlp_dim=24,
            max_length=8,
            num_classes=3,
            tie_embeddings=False,
        ),
    ),
    "vit": (
        ViT,
        ViTConfig(
            num_layers=1,
            num_heads=4,
            model_dim=16,
            mlp_dim=24,
            image_size=8,
            patch_size=4,
            num_classes=5,
            representation_size=12,
        ),
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_parameter_of_every_family_has_a_rule(family, caplog):
    params = abstract_params(*FAMILIES[family])
    with caplog.at_level(logging.INFO, logger="attn.training.sharding"):
        axes = flat(sharding.logical_axes(params))
    assert "no sharding rule" not in caplog.text
    for name, leaf in flat(params).items():
        assert len(axes[name]) == len(leaf.shape), name
        # Every matrix of width D has "embed" on its D dimension (FSDP shards all of them).
        *_, module, leaf_name = ["", *name.split("/")]
        if leaf_name in ("kernel", "embedding") and module not in ("classifier", "head"):
            assert "embed" in axes[name], name
    assert "(no rule)" not in sharding.plan_table(params, abstract_mesh(fsdp=4))


def test_recurrent_and_convolutional_models_have_rules(caplog):
    from attn.models.conv import ConvS2S, ConvS2SConfig
    from attn.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig

    rnn = abstract_params(Seq2SeqRNN, Seq2SeqRNNConfig())
    conv = abstract_params(ConvS2S, ConvS2SConfig())
    with caplog.at_level(logging.INFO, logger="attn.training.sharding"):
        rnn_axes, conv_axes = flat(sharding.logical_axes(rnn)), flat(sharding.logical_axes(conv))
    assert "no sharding rule" not in caplog.text
    assert rnn_axes["encoder/cells/0/hidden_kernel"] == P(None, None)  # recurrence: replicated
    assert rnn_axes["output_proj/kernel"] == P("embed", "vocab")
    assert conv_axes["encoder_convs/0/kernel"] == P(None, "embed", None)
    assert conv_axes["attention_in/0/kernel"] == P("embed", None)


def test_logical_axes_of_the_lm_parameters():
    axes = flat(sharding.logical_axes(abstract_params(*FAMILIES["lm"])))
    attention = "blocks/0/self_attention"
    assert axes[f"{attention}/query/kernel"] == P("embed", "heads")
    assert axes[f"{attention}/key/kernel"] == P("embed", "heads")
    assert axes[f"{attention}/query/bias"] == P("heads")
    assert axes[f"{attention}/out/kernel"] == P("heads", "embed")
    assert axes[f"{attention}/out/bias"] == P("embed")
    assert axes["blocks/0/mlp/input_proj/kernel"] == P("embed", "mlp")
    assert axes["blocks/0/mlp/input_proj/bias"] == P("mlp")
    assert axes["blocks/0/mlp/output_proj/kernel"] == P("mlp", "embed")
    assert axes["token_embedding/embedding"] == P("vocab", "embed")
    assert axes["lm_head/kernel"] == P("embed", "vocab")
    assert axes["position_embedding/embedding"] == P("position", "embed")
    assert axes["final_norm/scale"] == P("norm")


def test_family_specific_parameters():
    transformer = flat(sharding.logical_axes(abstract_params(*FAMILIES["transformer"])))
    assert transformer["output_proj/kernel"] == P("embed", "vocab")
    assert transformer["decoder_blocks/0/mlp/output_proj/kernel"] == P("mlp", "embed")
    assert transformer["decoder_blocks/0/cross_attention/key/kernel"] == P("embed", "heads")
    assert transformer["target_embedding/embedding"] == P("vocab", "embed")
    bert = flat(sharding.logical_axes(abstract_params(*FAMILIES["bert"])))
    assert bert["embeddings/word/embedding"] == P("vocab", "embed")
    assert bert["embeddings/token_type/embedding"] == P(None, "embed")
    assert bert["mlm_head/decoder/kernel"] == P("embed", "vocab")
    assert bert["mlm_head/bias"] == P("vocab")
    assert bert["classifier/kernel"] == P(None, "classes")
    vit = flat(sharding.logical_axes(abstract_params(*FAMILIES["vit"])))
    assert vit["patch_embedding/kernel"] == P(None, None, None, "embed")
    assert vit["class_token"] == P(None, None, "embed")
    assert vit["head/kernel"] == P(None, "classes")


def test_mesh_specs_for_data_fsdp_and_tensor_parallel():
    params = abstract_params(*FAMILIES["lm"])
    query = "blocks/0/self_attention/query/kernel"
    data = flat(sharding.param_shardings(params, abstract_mesh(data=8)))
    assert all(s.spec == P(*[None] * len(s.spec)) for s in data.values())
    fsdp = flat(sharding.param_shardings(params, abstract_mesh(data=2, fsdp=4)))
    assert fsdp[query].spec == P("fsdp", None)
    assert fsdp["token_embedding/embedding"].spec == P(None, "fsdp")
    assert fsdp["final_norm/scale"].spec == P(None)
    tensor = flat(sharding.param_shardings(params, abstract_mesh(data=2, tensor=4)))
    assert tensor[query].spec == P(None, "tensor")
    assert tensor["blocks/0/self_attention/out/kernel"].spec == P("tensor", None)
    assert tensor["blocks/0/mlp/output_proj/kernel"].spec == P("tensor", None)
    assert tensor["lm_head/kernel"].spec == P(None, "tensor")
    both = flat(sharding.param_shardings(params, abstract_mesh(fsdp=2, tensor=4)))
    assert both[query].spec == P("fsdp", "tensor")
    assert both[query].shard_shape((16, 16)) == (8, 4)


def test_optimizer_state_follows_its_parameters():
    import optax

    params = abstract_params(*FAMILIES["lm"])
    opt_state = jax.eval_shape(optax.adamw(1e-3).init, params)
    specs = flat(sharding.param_shardings(opt_state, abstract_mesh(data=2, tensor=4)))
    query = "blocks/0/self_attention/query/kernel"
    assert specs[f"0/mu/{query}"].spec == P(None, "tensor")
    assert specs[f"0/nu/{query}"].spec == P(None, "tensor")
    assert specs["0/count"].spec == P()


def test_indivisible_dimension_is_a_clear_error():
    params = abstract_params(*FAMILIES["lm"])  # mlp_dim F = 24
    with pytest.raises(ValueError) as error:
        sharding.param_shardings(params, abstract_mesh(tensor=16))
    message = str(error.value)
    assert "blocks/0/mlp/input_proj" in message
    assert "size 24" in message and "tensor=16" in message and "'mlp'" in message


def test_unknown_parameters_are_replicated_and_logged(caplog):
    tree = {"mystery": {"weight": jnp.zeros((6, 4))}, "scale": jnp.zeros(())}
    with caplog.at_level(logging.INFO, logger="attn.training.sharding"):
        specs = sharding.param_shardings(tree, abstract_mesh(fsdp=4, tensor=2))
        axes = sharding.logical_axes(tree)
    assert specs["mystery"]["weight"].spec == P(None, None)
    assert axes["mystery"]["weight"] == P(None, None)
    assert "no sharding rule for mystery/weight" in caplog.text
    assert "(no rule)" in sharding.plan_table(tree, abstract_mesh(fsdp=4))


def test_rules_errors():
    params = abstract_params(*FAMILIES["lm"])
    with pytest.raises(ValueError, match="mesh axis 'model'"):
        sharding.param_shardings(params, abstract_mesh(), {"embed": "model"})
    with pytest.raises(ValueError, match="used by two dimensions"):
        sharding.param_shardings(params, abstract_mesh(fsdp=2), {"embed": "fsdp", "mlp": "fsdp"})
    with pytest.raises(TypeError, match="mesh"):
        sharding.param_shardings(params, {"data": 1})


def test_custom_rules_table():
    params = abstract_params(*FAMILIES["lm"])
    rules = {**sharding.DEFAULT_RULES, "embed": None, "heads": "fsdp"}
    specs = flat(sharding.param_shardings(params, abstract_mesh(fsdp=4), rules))
    assert specs["blocks/0/self_attention/query/kernel"].spec == P(None, "fsdp")


def test_batch_sharding():
    assert sharding.batch_sharding(abstract_mesh(data=2, fsdp=4)).spec == P(("data", "fsdp"))
    assert sharding.batch_sharding(abstract_mesh(data=8)).spec == P("data")
    assert sharding.batch_sharding(abstract_mesh()).spec == P(None)


def test_make_mesh_on_one_device():
    mesh = sharding.make_mesh({"data": -1})
    assert mesh.axis_names == sharding.MESH_AXES
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert all(t == AxisType.Auto for t in mesh.axis_types)
    with pytest.raises(ValueError, match="needs 2 devices"):
        sharding.make_mesh({"data": 2})
    with pytest.raises(ValueError, match="at most one axis of size -1"):
        sharding.make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ValueError, match="unknown mesh axes"):
        sharding.make_mesh({"model": 1})
    with pytest.raises(ValueError, match="positive int or -1"):
        sharding.make_mesh({"data": 0})


def test_shard_and_plan_table_on_one_device():
    params = nnx.state(TransformerLM(FAMILIES["lm"][1], rngs=nnx.Rngs(0)), nnx.Param)
    mesh = sharding.make_mesh({})
    placed = sharding.shard(params, sharding.param_shardings(params, mesh))
    for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(placed), strict=True):
        np.testing.assert_array_equal(before, after)
        assert after.sharding.mesh.shape == mesh.shape
    table = sharding.plan_table(params, mesh).splitlines()
    assert table[0].split()[:3] == ["parameter", "shape", "logical"]
    assert len(table) == len(jax.tree.leaves(params)) + 2
    assert "token_embedding/embedding" in "\n".join(table)
    with pytest.raises(ValueError, match="one sharding per leaf"):
        sharding.shard(params, [mesh])
    batch = sharding.shard_batch({"ids": np.arange(6).reshape(2, 3)}, sharding.batch_sharding(mesh))
    np.testing.assert_array_equal(batch["ids"], np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="leading batch dimension"):
        sharding.shard_batch({"ids": np.int32(3)}, sharding.batch_sharding(mesh))
    with pytest.raises(TypeError, match="NamedSharding"):
        sharding.shard_batch({"ids": np.zeros(2)}, None)


# ---- 8 fake CPU devices, in a subprocess ----------------------------------------------------


@pytest.fixture(scope="module")
def multidevice(tmp_path_factory) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    workdir = tmp_path_factory.mktemp("multidevice")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_losses_equal_one_device(multidevice):
    assert multidevice["device_count"] == 8
    single = np.array(multidevice["meshes"]["single"]["losses"])
    # The step trains: after 3 steps the loss on the first batch has dropped.
    assert multidevice["restores"]["tensor"]["next_loss_saved"] < single[0] - 0.5
    for name in ("data", "fsdp", "tensor"):
        np.testing.assert_allclose(multidevice["meshes"][name]["losses"], single, atol=1e-5)


def _expected(name):
    attention = "blocks/0/self_attention"
    return {
        "data": {
            f"{attention}/query/kernel": ([], [[32, 32]], 1),
            "token_embedding/embedding": ([], [[64, 32]], 1),
        },
        "fsdp": {
            f"{attention}/query/kernel": (["fsdp"], [[8, 32]], 4),
            f"{attention}/out/kernel": ([None, "fsdp"], [[32, 8]], 4),
            "blocks/0/mlp/input_proj/kernel": (["fsdp"], [[8, 48]], 4),
            "blocks/0/mlp/output_proj/bias": (["fsdp"], [[8]], 4),
            "token_embedding/embedding": ([None, "fsdp"], [[64, 8]], 4),
            "lm_head/kernel": (["fsdp"], [[8, 64]], 4),
            "final_norm/scale": ([None], [[32]], 1),
        },
        "tensor": {
            f"{attention}/query/kernel": ([None, "tensor"], [[32, 8]], 4),
            f"{attention}/out/kernel": (["tensor"], [[8, 32]], 4),
            "blocks/0/mlp/input_proj/kernel": ([None, "tensor"], [[32, 12]], 4),
            "token_embedding/embedding": (["tensor"], [[16, 32]], 4),
            "lm_head/kernel": ([None, "tensor"], [[32, 16]], 4),
            "final_norm/scale": ([], [[32]], 1),
        },
    }[name]


def _strip(spec):
    """Trailing Nones do not change a spec."""
    spec = list(spec)
    while spec and spec[-1] is None:
        spec.pop()
    return spec


@pytest.mark.parametrize("name", ["data", "fsdp", "tensor"])
def test_parameters_and_adam_moments_sharded_as_planned(multidevice, name):
    arrays = multidevice["meshes"][name]["arrays"]
    for path, (spec, shards, count) in _expected(name).items():
        for got in (arrays[f"0/{path}"], arrays[f"1/opt_state/0/mu/{path}"]):
            assert _strip(got["spec"]) == _strip(spec), path
            assert got["shards"] == shards, path
            assert got["num_shards"] == count, path
    for counter in ("1/opt_state/0/count", "1/step"):
        assert arrays[counter]["spec"] == [] and arrays[counter]["shards"] == [[]]
    plan = multidevice["meshes"][name]["plan"]
    assert "mesh data=" in plan and "0/lm_head/kernel" in plan


@pytest.mark.parametrize("name", ["tensor", "single"])
def test_checkpoint_from_fsdp_restores_on_another_mesh(multidevice, name):
    restored = multidevice["restores"][name]
    assert restored["step"] == 3
    assert restored["all_equal"]
    assert restored["rng_equal"]
    assert restored["data"] == {"index": 24}
    assert restored["next_loss_restored"] == pytest.approx(restored["next_loss_saved"], abs=1e-5)
    arrays = restored["arrays"]
    if name == "tensor":
        for path, (spec, shards, count) in _expected("tensor").items():
            got = arrays[f"0/{path}"]
            assert (_strip(got["spec"]), got["shards"], got["num_shards"]) == (
                _strip(spec),
                shards,
                count,
            )
    else:
        assert all(a["num_shards"] == 1 for a in arrays.values())
        assert arrays["0/token_embedding/embedding"]["shards"] == [[64, 32]]


def test_indivisible_errors_on_real_meshes(multidevice):
    message = multidevice["indivisible_error"]
    assert "token_embedding/embedding" in message
    assert "size 60" in message and "tensor=8" in message
    batch_error = multidevice["batch_error"]
    assert "B=6" in batch_error and "8 batch shards (mesh axes data=8)" in batch_error
