"""Random-access sources for TFDS catalog datasets that are already prepared on disk.

`tfds.data_source` reads array_record files without TensorFlow. It never downloads here
(`download=False`): a dataset missing from `data_dir` raises `DatasetNotFoundError` at once,
with the command that prepares it, instead of retrying the network for minutes.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow_datasets as tfds

# Not imported by `import tensorflow_datasets`: registers the "wmt14_translate" builder.
import tensorflow_datasets.translate.wmt14


class DatasetNotFoundError(FileNotFoundError):
    """A catalog dataset is not prepared (in array_record format) in the given data_dir."""


def _prepare_hint(name: str, data_dir: str | None, dataset_dir: str) -> str:
    dir_arg = f", data_dir={data_dir!r}" if data_dir else ""
    return (
        "Prepare it on a machine with network access with "
        f'`python -c "import attn.data; attn.data.prepare({name!r}{dir_arg})"` '
        "(which writes the array_record files that tfds.data_source reads) and copy the "
        f"prepared folder to {dataset_dir}, or pass data_dir= pointing to a directory where "
        "it is prepared."
    )


def catalog_source(name: str, tfds_name: str, split: str, data_dir: str | None) -> Sequence:
    """The `tfds.data_source` of one split of a prepared catalog dataset.

    Args:
      name: the dataset's name in `attn.data` (used in the error message).
      tfds_name: its TFDS name, e.g. "wmt14_translate/de-en".
      split: a TFDS split, e.g. "train" or "train[:90%]".
      data_dir: the TFDS data directory (None: TFDS's default, usually ~/tensorflow_datasets).

    Returns:
      a random-access sequence of example dicts (numpy arrays, text as bytes or str).

    Raises:
      DatasetNotFoundError: the dataset is not prepared in data_dir, or only in a format other
        than array_record.
    """
    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, FileNotFoundError, AssertionError) as error:
        builder = tfds.builder(tfds_name, data_dir=data_dir, try_gcs=False)
        if builder.is_prepared():
            reason = (
                f"is prepared in {builder.data_dir} in the {builder.info.file_format} format, "
                "but reading it without TensorFlow needs array_record"
            )
        else:
            reason = f"is not prepared in {builder.data_dir}"
        raise DatasetNotFoundError(
            f"TFDS dataset {tfds_name!r} {reason}. "
            f"{_prepare_hint(name, data_dir, str(builder.data_dir))}"
        ) from error


def prepare_catalog(tfds_name: str, data_dir: str | None) -> None:
    """Downloads and prepares a catalog dataset in array_record format (needs network access).

    Args:
      tfds_name: its TFDS name, e.g. "cifar10".
      data_dir: the TFDS data directory (None: TFDS's default).
    """
    builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
