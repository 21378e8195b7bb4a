"""The run directory: one run at a time, resumed only with the config its checkpoints were
trained with, and run metadata written once the run has started.

    workdir/.lock          held (fcntl.flock) by process 0 while a run is going on
    workdir/config.json    the config of the checkpoints (written once training starts)
    workdir/tokenizer.json the tokenizer of text tasks (reused only when resuming)
    workdir/metrics.jsonl  one record per step and split (cut back to the checkpoint on resume)

The lock is the kernel's: it goes when the process dies, even by SIGKILL, so a killed run
resumes without clean-up, while a second run on a live one stops at once.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from typing import Any

from attn.training.config import default_config

# Fields that may differ from the checkpoints' config on a resume: the length of the run, the
# intervals, the evaluation, the data folder and the mesh (checkpoints restore onto any mesh).
RESUMABLE_CHANGES = (
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "eval.",
    "dataset.data_dir",
    "mesh.",
)


def _config_dict(config: Mapping[str, Any]) -> dict:
    return json.loads(config.to_json() if hasattr(config, "to_json") else json.dumps(config))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        flat.update(_flat(value, f"{prefix}{name}." if isinstance(value, dict) else prefix + name))
    return flat


class Workdir:
    """The directory of one run, locked for the run's lifetime (a context manager).

    Args:
      path: the directory (created when missing).
      primary: whether this is process 0, the one that locks and writes.

    Raises:
      ValueError: the path is a file or cannot be created, is not writable, or another live run
        holds it.
    """

    def __init__(self, path: str, *, primary: bool = True):
        self.path = os.path.abspath(path)
        self.primary = primary
        self._lock = None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(
                f"--workdir {self.path} is a file, not a directory; use another --workdir"
            )
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as error:
            raise ValueError(
                f"--workdir {self.path} cannot be a run directory ({type(error).__name__}: "
                f"{error.strerror or error}); use another --workdir"
            ) from None
        if primary:
            self._take_lock()

    def _take_lock(self) -> None:
        lock_path = os.path.join(self.path, ".lock")
        try:
            lock = open(lock_path, "a+")  # noqa: SIM115 (held open for the run's lifetime)
        except OSError as error:  # a read-only directory, a full disk
            raise ValueError(
                f"--workdir {self.path} is not writable ({type(error).__name__}: "
                f"{error.strerror or error}: {lock_path}); make it writable or use another "
                "--workdir"
            ) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise ValueError(
                f"another run (process {holder}) is using --workdir {self.path}; wait for it to "
                "end or use another --workdir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def close(self) -> None:
        """Release the lock."""
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has_checkpoints(self) -> bool:
        """Whether `checkpoints/` holds a completed step (a run to resume)."""
        folder = self.file("checkpoints")
        return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))

    def check_resume_config(self, config: Mapping[str, Any]) -> None:
        """Before anything is touched: refuse to resume checkpoints trained with another config.

        Raises:
          ValueError: one line naming each field that differs (other than `RESUMABLE_CHANGES`).
        """
        saved_path = self.file("config.json")
        if not (self.has_checkpoints() and os.path.exists(saved_path)):
            return
        with open(saved_path) as f:
            saved = _flat(json.load(f))
        new = _flat(_config_dict(config))
        # A field the saved config lacks (a run from before the field existed) that still has
        # its default trains as that run did.
        defaults = _flat(_config_dict(default_config()))
        differing = [
            f"{name} {saved.get(name)!r} -> {new.get(name)!r}"
            for name in sorted(set(saved) | set(new))
            if saved.get(name) != new.get(name)
            and not name.startswith(RESUMABLE_CHANGES)
            and not (name not in saved and name in defaults and new[name] == defaults[name])
        ]
        if differing:
            raise ValueError(
                f"the checkpoints in {self.path} were trained with another config: "
                f"{'; '.join(differing)}. Use a new --workdir, or the config of that run (on a "
                f"resume only {', '.join(RESUMABLE_CHANGES)}* may change)"
            )

    def tokenizer_to_reuse(self) -> str | None:
        """The path of the tokenizer of the run being resumed, or None (a fresh run makes its
        own, whatever a failed start left behind)."""
        path = self.file("tokenizer.json")
        return path if self.has_checkpoints() and os.path.exists(path) else None

    def write_metadata(self, config: Mapping[str, Any], tokenizer: Any) -> None:
        """Write config.json and tokenizer.json (process 0), once the run has started."""
        if not self.primary:
            return
        if tokenizer is not None:
            tokenizer.save(self.file("tokenizer.json"))
        with open(self.file("config.json"), "w") as f:
            f.write(json.dumps(_config_dict(config), indent=2))

    def cut_metrics(self, step: int, *, reevaluate: bool) -> None:
        """Drop the records of metrics.jsonl after `step` (the checkpoint resumed from), so that
        every step and split has one record; with `reevaluate`, also the evaluation of `step`."""
        path = self.file("metrics.jsonl")
        if not self.primary or not os.path.exists(path):
            return
        with open(path) as f:
            lines = f.read().splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            late = record.get("step", 0) > step
            again = reevaluate and record.get("step") == step and record.get("split") == "eval"
            if not (late or again):
                kept.append(line)
        if len(kept) != len(lines):
            with open(path, "w") as f:
                f.write("".join(line + "\n" for line in kept))
