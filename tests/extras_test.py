"""The light install: the core runs models and kernels; a missing extra is one line naming it."""

import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from attn import extras
from attn.pretrained.state_dict import read_state_dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / f"constraints-{sys.version_info.major}.{sys.version_info.minor}.txt"


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?", requirement).group(0)


def test_pyproject_extras_are_the_lists_of_attn_extras():
    optional = PYPROJECT["optional-dependencies"]
    for extra, packages in extras.PACKAGES.items():
        included = [f"attn[{','.join(extras.INCLUDES[extra])}]"] if extra in extras.INCLUDES else []
        assert [_name(r) for r in optional[extra]] == included + list(packages), extra
    assert optional["all"] == [f"attn[{','.join(extras.PACKAGES)}]"]
    assert optional["test"][0] == "attn[all]"
    assert [_name(r) for r in PYPROJECT["dependencies"]] == ["jax", "flax", "numpy"]


def test_train_includes_the_data_and_viz_packages():
    packages = extras.packages_of("train")
    assert {"tensorflow-datasets", "grain", "matplotlib", "optax", "sacrebleu"} <= set(packages)
    assert extras.missing_packages("train") == []  # this suite runs with every extra


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(extras.PACKAGES, "hf", {"safetensors": "attn_no_such_module.sub"})
    assert extras.missing_packages("hf") == ["safetensors"]
    message = (
        "reading a .safetensors file needs the 'hf' extra: pip install 'attn[hf]' "
        "(missing: safetensors)"
    )
    with pytest.raises(ImportError) as info:
        read_state_dict("model.safetensors")
    assert str(info.value) == message
    assert read_state_dict({"w": [1.0]})["w"].shape == (1,)  # in-memory state dicts need no extra


def test_an_unknown_extra_is_a_value_error():
    with pytest.raises(ValueError, match=r"extra must be one of \['data', .*got 'tpu'"):
        extras.require("tpu", "a TPU")


CORE_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
import attn
from attn.kernels import attention, dot_product_attention
from attn.models import TransformerLM, TransformerLMConfig

q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 64, 4, 16))
fast = dot_product_attention(q, k, v, is_causal=True, implementation="blockwise")
slow = dot_product_attention(q, k, v, is_causal=True, implementation="xla")
np.testing.assert_allclose(fast, slow, atol=1e-5)
ctx, weights = attention(q[0, :, 0], k[0, :, 0], v[0, :, 0])
np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)

model = TransformerLM(TransformerLMConfig.named("tiny"), rngs=nnx.Rngs(0))
ids = jnp.ones((2, 8), jnp.int32)
logits = model(ids)
assert logits.shape == (2, 8, model.config.vocab_size) and bool(jnp.isfinite(logits).all())
print("core ok")
for feature in ("attn.training", "attn.data", "attn.viz"):
    try:
        __import__(feature)
    except ImportError as e:
        print(f"{feature}: {e}")
    else:
        raise SystemExit(f"{feature} imported without its extra")
"""


@pytest.mark.slow
@pytest.mark.skipif(not CONSTRAINTS.exists(), reason=f"no {CONSTRAINTS.name} for this Python")
def test_core_install_runs_a_model_and_a_kernel_and_names_missing_extras(tmp_path):
    source = tmp_path / "source"  # a copy, so that building the wheel writes nothing here
    shutil.copytree(ROOT / "attn", source / "attn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, source],
        capture_output=True,
        text=True,
    )
    errors = [line for line in install.stderr.splitlines() if "is ignored" not in line]
    assert install.returncode == 0, "\n".join(errors)
    run = subprocess.run([python, "-c", CORE_SCRIPT], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "core ok"
    assert lines[1].startswith(
        "attn.training: attn.training needs the 'train' extra: pip install 'attn[train]' "
        "(missing: tensorflow-datasets"
    )
    assert lines[2].startswith("attn.data: attn.data needs the 'data' extra: pip install")
    assert lines[3] == (
        "attn.viz: attn.viz needs the 'viz' extra: pip install 'attn[viz]' (missing: matplotlib)"
    )
    assert len(lines) == 4
