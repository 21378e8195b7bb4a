"""Float64 NumPy reference for multi-head attention, the ground truth of the kernel tests."""

import numpy as np


def numpy_attention(query, key, value, bias=None, mask=None, scale=None, return_weights=False):
    """softmax(scale · Q Kᵀ + bias, masked) V in float64, layout of jax.nn.dot_product_attention.

    query[B, T, N, H], key[B, S, K, H], value[B, S, K, Hv]; bias/mask broadcast to [B, N, T, S]
    (mask True = attend). Query rows with no attendable key give output 0 and weights 0.
    """
    q, k, v = (np.asarray(x, np.float64) for x in (query, key, value))
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    scale = 1.0 / np.sqrt(H) if scale is None else scale
    k = np.repeat(k, N // K, axis=2)  # query head n uses key/value head n // G
    v = np.repeat(v, N // K, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    allowed = np.ones((B, N, T, S), bool)
    if mask is not None:
        allowed = np.broadcast_to(np.asarray(mask, bool), (B, N, T, S))
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    unnormalised = np.where(allowed, np.exp(logits - row_max), 0.0)
    total = unnormalised.sum(-1, keepdims=True)
    weights = np.where(total > 0, unnormalised / np.where(total > 0, total, 1.0), 0.0)
    out = np.einsum("bnts,bsnh->btnh", weights, v)
    return (out, weights) if return_weights else out
