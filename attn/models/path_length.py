"""How far apart two positions are in a network: receptive fields and maximum path lengths.

    receptive field of stacked convolutions = 1 + Σ_l (k - 1) d_l

    maximum path length between positions 0 and n - 1 (Vaswani et al. 2017, Table 1):
      self-attention        1                 (O(1))
      recurrence            n - 1             (O(n))
      convolution           ⌈(n - 1)/(k - 1)⌉ (O(n/k))
      dilated convolution   ⌈log_k n⌉         (O(log_k n)), dilations 1, k, k², ...

The path length counts the layers (or recurrence steps) that a signal from the input at one
position passes through before it can affect the output at the other, which is how far gradients
travel between them. Each number is the smallest depth at which output n - 1 depends on input 0;
`tests/models/conv_test.py` measures it on built models with `jax.jacobian`.
"""

from __future__ import annotations

from collections.abc import Sequence

from attn.kernels.validation import check_int

PATH_KINDS = ("self_attention", "recurrent", "convolution", "dilated_convolution")
"""The layer kinds of `max_path_length`."""


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Receptive field of stacked 1-D convolutions (van den Oord et al. 2016, WaveNet).

        r = 1 + Σ_l (k - 1) d_l

    The number of consecutive input positions that one output position depends on. WaveNet's
    dilations 1, 2, 4, ..., 2^(L-1) with k = 2 give r = 2^L.

    Args:
      kernel_size: k >= 1, the width of every convolution.
      dilations: d_l >= 1 of each layer, in order; empty for no layer (r = 1).

    Returns:
      r, an int.
    """
    fn = "receptive_field"
    check_int(fn, "kernel_size", kernel_size, minimum=1)
    if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence):
        raise TypeError(f"{fn}: dilations must be a sequence of ints, got {dilations!r}")
    for dilation in dilations:
        check_int(fn, "each dilation", dilation, minimum=1)
    return 1 + (kernel_size - 1) * sum(dilations)


def max_path_length(kind: str, n: int, *, kernel_size: int | None = None) -> int:
    """Maximum path length between two of n positions (Vaswani et al. 2017, Table 1).

        self_attention: 1   recurrent: n - 1   convolution: ⌈(n - 1)/(k - 1)⌉
        dilated_convolution: ⌈log_k n⌉ (dilations 1, k, k², ..., so L layers see k^L positions)

    The smallest number of layers (recurrence steps for "recurrent") after which output n - 1
    depends on input 0 (causal layers) or the two ends of the sequence depend on each other; the
    farthest pair of positions is the worst case, hence "maximum". One position (n = 1) needs no
    path: 0 for every kind.

    Args:
      kind: a name in `PATH_KINDS`.
      n: the number of positions, >= 1.
      kernel_size: k >= 2, the convolution width; required for the convolutions, not allowed
        otherwise.

    Returns:
      the path length, an int.
    """
    fn = "max_path_length"
    if kind not in PATH_KINDS:
        raise ValueError(f"{fn}: unknown kind {kind!r}; expected one of {list(PATH_KINDS)}")
    check_int(fn, "n", n, minimum=1)
    convolutional = kind in ("convolution", "dilated_convolution")
    if convolutional:
        if kernel_size is None:
            raise ValueError(f"{fn}: kind={kind!r} needs kernel_size (an integer >= 2)")
        check_int(fn, "kernel_size", kernel_size, minimum=2)
    elif kernel_size is not None:
        raise ValueError(f"{fn}: kind={kind!r} takes no kernel_size, got {kernel_size!r}")
    if n == 1:
        return 0
    if kind == "self_attention":
        return 1
    if kind == "recurrent":
        return n - 1
    if kind == "convolution":
        return -(-(n - 1) // (kernel_size - 1))  # ⌈(n - 1) / (k - 1)⌉
    layers = 0  # ⌈log_k n⌉ in exact integers: the smallest L with k^L >= n
    while kernel_size**layers < n:
        layers += 1
    return layers
