"""`attn.kernels.dot_product_attention` against PyTorch: `F.scaled_dot_product_attention` and
`nn.MultiheadAttention`, outputs, per-head weights and gradients.

The expected values are `.npz` fixtures made by `tests/fixtures/make_torch_attention.py`; this file
needs neither torch nor the script. Torch lays SDPA tensors out as [B, N, T, H] and `attn` as
[B, T, N, H]; torch's MultiheadAttention masks use True = masked and `attn` True = attend.

Tolerances: float32 fixtures are torch float32 results, so both sides carry float32 rounding (the
largest differences seen are about 4e-6 on values up to 5). float64 fixtures are torch float64
results, matched to 1e-10 by the implementations that compute in float64 for float64 inputs
("reference", "blockwise"; about 1e-14 seen). "xla" calls `jax.nn.dot_product_attention`, whose
softmax runs in float32 whatever the input dtype, so on float64 inputs it is held to the float32
tolerance (about 4e-6 seen), not skipped.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn.kernels import dot_product_attention

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
IMPLEMENTATIONS = ("reference", "blockwise", "direct", "xla")
DTYPES = ("float32", "float64")
SDPA_CASES = (
    "plain",
    "bool_mask",
    "head_mask",
    "causal",
    "scale",
    "cross",
    "float_mask",
    "gqa",
)
MHA_CASES = ("self_padding", "causal", "cross", "kdim_vdim")

# Implementations whose logits and softmax run in float64 for float64 inputs ("xla" does not).
FLOAT64_IMPLEMENTATIONS = ("reference", "blockwise", "direct")
FLOAT32_TOL = dict(rtol=2e-5, atol=2e-5)
FLOAT64_TOL = dict(rtol=1e-10, atol=1e-10)


def tolerance(dtype: str, implementation: str) -> dict[str, float]:
    """assert_allclose tolerances for a fixture dtype and an implementation."""
    if dtype == "float64" and implementation in FLOAT64_IMPLEMENTATIONS:
        return FLOAT64_TOL
    # float32 inputs; or float64 inputs to an implementation that computes in float32.
    return FLOAT32_TOL


def load(name: str) -> dict[str, np.ndarray]:
    """The arrays of `tests/fixtures/<name>.npz`."""
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def to_attn_layout(x: np.ndarray) -> np.ndarray:
    """Torch SDPA layout to the `attn` layout: [B, N, T, H] -> [B, T, N, H]."""
    return np.swapaxes(x, 1, 2)


def assert_close(actual, expected, tol: dict[str, float], what: str) -> None:
    """assert_allclose that names the compared quantity and checks shape and dtype first."""
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **tol)


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------------------------


def sdpa_function(data: dict[str, np.ndarray], implementation: str) -> Callable:
    """f(q, k, v[, bias]) in the `attn` layout with the mask, scale and causality of a case."""
    mask = data.get("mask")
    scale = float(data["scale"]) if "scale" in data else None
    is_causal = bool(data.get("is_causal", False))

    def f(q, k, v, bias=None):
        return dot_product_attention(
            q,
            k,
            v,
            bias,
            None if mask is None else jnp.asarray(mask),
            scale=scale,
            is_causal=is_causal,
            implementation=implementation,
        )

    return f


def sdpa_arguments(data: dict[str, np.ndarray]) -> list[jax.Array]:
    """The differentiable arguments (q, k, v[, bias]) of a case, in the `attn` layout."""
    arguments = [jnp.asarray(to_attn_layout(data[name])) for name in ("q", "k", "v")]
    if "bias" in data:
        arguments.append(jnp.asarray(data["bias"]))  # [B, N, T, S] in both libraries
    return arguments


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SDPA_CASES)
def test_matches_torch_sdpa(case: str, dtype: str, implementation: str) -> None:
    """Output and the gradients of sum(out · cotangent) equal torch's SDPA."""
    data = load(f"torch_sdpa_{case}_{dtype}")
    tol = tolerance(dtype, implementation)
    with jax.enable_x64(dtype == "float64"):
        arguments = sdpa_arguments(data)
        assert arguments[0].dtype == np.dtype(dtype)
        out, vjp = jax.vjp(sdpa_function(data, implementation), *arguments)
        grads = vjp(jnp.asarray(to_attn_layout(data["cotangent"])))
        assert_close(out, to_attn_layout(data["out"]), tol, "out")
        for name, grad in zip(("dq", "dk", "dv"), grads, strict=False):
            assert_close(grad, to_attn_layout(data[name]), tol, name)
        if "bias" in data:
            assert_close(grads[3], data["dbias"], tol, "dbias")


# --------------------------------------------------------------------------------------------
# nn.MultiheadAttention
# --------------------------------------------------------------------------------------------


def projection_weights(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W_q, W_k, W_v) in torch's (out, in) layout, from the packed or the separate weights."""
    if "in_proj_weight" in data:
        # [3D, D] -> 3 × [D, D], in the order q, k, v
        return tuple(np.split(data["in_proj_weight"], 3, axis=0))
    return data["q_proj_weight"], data["k_proj_weight"], data["v_proj_weight"]


def mha_mask(data: dict[str, np.ndarray]) -> np.ndarray | None:
    """Torch's masks (True = masked) as one `attn` mask (True = attend), [B or 1, 1, T or 1, S]."""
    mask = None
    if "key_padding_mask" in data:
        mask = ~data["key_padding_mask"][:, None, None, :]  # [B, S] -> [B, 1, 1, S]
    if "attn_mask" in data:
        causal = ~data["attn_mask"][None, None, :, :]  # [T, S] -> [1, 1, T, S]
        mask = causal if mask is None else mask & causal
    return mask


def mha_function(
    data: dict[str, np.ndarray], implementation: str, return_weights: bool
) -> Callable:
    """f(query, key, value) -> out[B, T, D] (and weights[B, N, T, S]) with the case's weights.

    Projections in torch's Linear convention y = x Wᵀ + b with W[out, in].
    """
    N = int(data["num_heads"])
    W_q, W_k, W_v = (jnp.asarray(w) for w in projection_weights(data))
    b_q, b_k, b_v = (jnp.asarray(b) for b in np.split(data["in_proj_bias"], 3))
    W_o, b_o = jnp.asarray(data["out_proj_weight"]), jnp.asarray(data["out_proj_bias"])
    mask = mha_mask(data)

    def split_heads(x):
        B, L, D = x.shape
        return x.reshape(B, L, N, D // N)  # [B, L, N*H] -> [B, L, N, H]

    def f(query, key, value):
        q = split_heads(jnp.einsum("BTE,DE->BTD", query, W_q) + b_q)
        k = split_heads(jnp.einsum("BSE,DE->BSD", key, W_k) + b_k)
        v = split_heads(jnp.einsum("BSE,DE->BSD", value, W_v) + b_v)
        result = dot_product_attention(
            q,
            k,
            v,
            mask=None if mask is None else jnp.asarray(mask),
            implementation=implementation,
            return_weights=return_weights,
        )
        heads, weights = result if return_weights else (result, None)
        B, T = heads.shape[:2]
        merged = heads.reshape(B, T, -1)  # [B, T, N, H] -> [B, T, N*H]
        out = jnp.einsum("BTE,DE->BTD", merged, W_o) + b_o
        return (out, weights) if return_weights else out

    return f


def mha_arguments(data: dict[str, np.ndarray]) -> list[jax.Array]:
    """(query, key, value) of a case as arrays of the fixture's dtype."""
    return [jnp.asarray(data[name]) for name in ("query", "key", "value")]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MHA_CASES)
def test_matches_torch_multihead_attention(case: str, dtype: str, implementation: str) -> None:
    """Projections + dot_product_attention + output projection equal nn.MultiheadAttention:
    output and the gradients of sum(out · cotangent) with respect to query, key and value."""
    data = load(f"torch_mha_{case}_{dtype}")
    tol = tolerance(dtype, implementation)
    with jax.enable_x64(dtype == "float64"):
        f = mha_function(data, implementation, return_weights=False)
        out, vjp = jax.vjp(f, *mha_arguments(data))
        grads = vjp(jnp.asarray(data["cotangent"]))
        assert_close(out, data["out"], tol, "out")
        for name, grad in zip(("dquery", "dkey", "dvalue"), grads, strict=True):
            assert_close(grad, data[name], tol, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MHA_CASES)
def test_weights_match_torch_multihead_attention(case: str, dtype: str) -> None:
    """Per-head weights [B, N, T, S] of return_weights=True equal torch's (average=False)."""
    data = load(f"torch_mha_{case}_{dtype}")
    tol = tolerance(dtype, "reference")
    with jax.enable_x64(dtype == "float64"):
        f = mha_function(data, "reference", return_weights=True)
        out, weights = f(*mha_arguments(data))
        assert_close(out, data["out"], tol, "out")
        # The weights are float32 for float32 inputs and float64 for float64 inputs.
        assert_close(weights, data["weights"], tol, "weights")


# --------------------------------------------------------------------------------------------
# The comparisons above catch plausible bugs
# --------------------------------------------------------------------------------------------


def changed(data: dict[str, np.ndarray], **changes) -> dict[str, np.ndarray]:
    """A copy of a fixture with entries replaced; a None value removes the entry."""
    data = dict(data)
    for name, value in changes.items():
        data.pop(name, None)
        if value is not None:
            data[name] = value
    return data


def causal_upper(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The causal triangle transposed: query i sees keys j >= i instead of j <= i."""
    T, S = data["q"].shape[2], data["k"].shape[2]
    return changed(data, is_causal=None, mask=np.triu(np.ones((T, S), bool))[None, None])


def kv_heads_interleaved(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Query head n reads K/V head n % K instead of n // G."""
    G = data["q"].shape[1] // data["k"].shape[1]
    return changed(data, k=np.tile(data["k"], (1, G, 1, 1)), v=np.tile(data["v"], (1, G, 1, 1)))


def heads_strided(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Heads split as [B, L, N*H] -> [B, L, H, N] -> [B, L, N, H] and merged back the same way.

    Head n then holds features n, n + N, n + 2N, ... instead of nH .. nH + H - 1; emulated by
    permuting the projected features (rows of the input projections, columns of the output one).
    """
    D, N = data["out_proj_weight"].shape[0], int(data["num_heads"])
    order = np.arange(D).reshape(D // N, N).T.reshape(-1)  # feature nH + h <- feature hN + n
    W_q, W_k, W_v = projection_weights(data)
    b_q, b_k, b_v = np.split(data["in_proj_bias"], 3)
    return changed(
        data,
        in_proj_weight=None,
        q_proj_weight=W_q[order],
        k_proj_weight=W_k[order],
        v_proj_weight=W_v[order],
        in_proj_bias=np.concatenate([b_q[order], b_k[order], b_v[order]]),
        out_proj_weight=data["out_proj_weight"][:, order],
    )


def torch_masks_not_inverted(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch's True = masked read as True = attend."""
    return changed(
        data, **{name: ~data[name] for name in ("key_padding_mask", "attn_mask") if name in data}
    )


def q_k_projections_swapped(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The packed in-projection read in the order k, q, v."""
    W_q, W_k, W_v = np.split(data["in_proj_weight"], 3)
    b_q, b_k, b_v = np.split(data["in_proj_bias"], 3)
    return changed(
        data,
        in_proj_weight=np.concatenate([W_k, W_q, W_v]),
        in_proj_bias=np.concatenate([b_k, b_q, b_v]),
    )


PLAUSIBLE_BUGS = {
    # (family, case, bug name): the fixture as the buggy code would see it.
    ("sdpa", "bool_mask", "mask ignored"): lambda d: changed(d, mask=None),
    ("sdpa", "bool_mask", "mask of another example"): lambda d: changed(
        d, mask=np.roll(d["mask"], 1, axis=0)
    ),
    ("sdpa", "bool_mask", "mask inverted"): lambda d: changed(d, mask=~d["mask"]),
    ("sdpa", "head_mask", "mask of another head"): lambda d: changed(
        d, mask=np.roll(d["mask"], 1, axis=1)
    ),
    ("sdpa", "causal", "causal ignored"): lambda d: changed(d, is_causal=None),
    ("sdpa", "causal", "causal transposed"): causal_upper,
    ("sdpa", "scale", "custom scale ignored"): lambda d: changed(d, scale=None),
    ("sdpa", "plain", "scale 1/H"): lambda d: changed(d, scale=np.array(1 / d["q"].shape[-1])),
    ("sdpa", "cross", "scale 1/sqrt(S)"): lambda d: changed(
        d, scale=np.array(d["k"].shape[2] ** -0.5)
    ),
    ("sdpa", "float_mask", "bias ignored"): lambda d: changed(d, bias=None),
    ("sdpa", "float_mask", "bias of another head"): lambda d: changed(
        d, bias=np.roll(d["bias"], 1, axis=1)
    ),
    ("sdpa", "gqa", "K/V heads interleaved"): kv_heads_interleaved,
    ("mha", "self_padding", "torch masks not inverted"): torch_masks_not_inverted,
    ("mha", "causal", "torch masks not inverted"): torch_masks_not_inverted,
    ("mha", "cross", "torch masks not inverted"): torch_masks_not_inverted,
    ("mha", "self_padding", "heads strided"): heads_strided,
    ("mha", "kdim_vdim", "heads strided"): heads_strided,
    ("mha", "causal", "q and k projections swapped"): q_k_projections_swapped,
    ("mha", "cross", "output projection not transposed"): lambda d: changed(
        d, out_proj_weight=d["out_proj_weight"].T
    ),
}


@pytest.mark.parametrize(("family", "case", "bug"), sorted(PLAUSIBLE_BUGS))
def test_fixtures_catch_plausible_bug(family: str, case: str, bug: str) -> None:
    """Through the same comparison, a plausible bug moves the output far outside tolerance.

    Guards against fixtures too bland to tell right from wrong (e.g. near-uniform attention).
    """
    data = load(f"torch_{family}_{case}_float64")
    buggy = PLAUSIBLE_BUGS[family, case, bug](data)
    with jax.enable_x64(True):
        if family == "sdpa":
            out = to_attn_layout(data["out"])
            got = sdpa_function(buggy, "reference")(*sdpa_arguments(buggy))
        else:
            out = data["out"]
            got = mha_function(buggy, "reference", return_weights=False)(*mha_arguments(buggy))
    got = np.asarray(got)
    assert got.shape == out.shape
    assert np.max(np.abs(got - out)) > 100 * FLOAT32_TOL["atol"], bug
