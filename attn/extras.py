"""Optional dependencies: which extra of `pip install 'attn[...]'` a feature needs.

`pip install attn` installs the core, jax, flax and numpy: `attn.kernels`, `attn.layers`,
`attn.models`, `attn.decoding` and `attn.pretrained` work with it alone. The rest needs an extra:

    extra   what it enables                        packages
    data    attn.data (TFDS builders, loaders)     tensorflow-datasets, importlib_resources,
                                                   array_record, grain, sentencepiece, scikit-learn
    viz     attn.viz (attention pictures)          matplotlib
    train   attn.training, experiments/train.py    optax, orbax-checkpoint, ml_collections, absl-py,
                                                   tqdm, tensorboardX, sacrebleu; data and viz
    hf      attn.pretrained reading .safetensors   safetensors
    all     all of the above

`pyproject.toml` declares the same lists (a test checks). A package that needs an extra calls
`require` before its first optional import, so that a missing extra is one clear line (wrapped
here):

    ImportError: attn.training needs the 'train' extra: pip install 'attn[train]'
    (missing: ml_collections, sacrebleu)
"""

from __future__ import annotations

import importlib.util

# extra -> {distribution name as pyproject.toml spells it: the module attn imports}
PACKAGES: dict[str, dict[str, str]] = {
    "data": {
        "tensorflow-datasets": "tensorflow_datasets",
        "importlib_resources": "importlib_resources",
        "array_record": "array_record",
        "grain": "grain",
        "sentencepiece": "sentencepiece",
        "scikit-learn": "sklearn",
    },
    "viz": {"matplotlib": "matplotlib"},
    "train": {
        "optax": "optax",
        "orbax-checkpoint": "orbax.checkpoint",
        "ml_collections": "ml_collections",
        "absl-py": "absl",
        "tqdm": "tqdm",
        "tensorboardX": "tensorboardX",
        "sacrebleu": "sacrebleu",
    },
    "hf": {"safetensors": "safetensors"},
}
# extras that include other extras (besides "all", which includes every one)
INCLUDES: dict[str, tuple[str, ...]] = {"train": ("data", "viz")}


def packages_of(extra: str) -> dict[str, str]:
    """{distribution: module} of everything `extra` installs, included extras first."""
    if extra not in PACKAGES:
        raise ValueError(f"extra must be one of {sorted(PACKAGES)}, got {extra!r}")
    packages: dict[str, str] = {}
    for included in INCLUDES.get(extra, ()):
        packages.update(packages_of(included))
    packages.update(PACKAGES[extra])
    return packages


def missing_packages(extra: str) -> list[str]:
    """The distributions of `extra` whose modules cannot be imported here (none: [])."""
    return [dist for dist, module in packages_of(extra).items() if not _importable(module)]


def require(extra: str, feature: str) -> None:
    """Raises one ImportError line naming `extra` if any of its packages is missing.

    Args:
      extra: "data", "viz", "train" or "hf".
      feature: what needs it, as the message names it ("attn.training").

    Raises:
      ImportError: `{feature} needs the '{extra}' extra: pip install 'attn[{extra}]' (missing: …)`.
    """
    missing = missing_packages(extra)
    if missing:
        raise ImportError(
            f"{feature} needs the '{extra}' extra: pip install 'attn[{extra}]' "
            f"(missing: {', '.join(missing)})"
        )


def _importable(module: str) -> bool:
    """Whether `module` can be found, without importing it (a dotted name imports its parent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
