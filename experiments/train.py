"""Train a model from an experiment config: the command-line face of `train_and_evaluate`.

    python experiments/train.py --config experiments/configs/dates.py --workdir runs/dates
    python experiments/train.py --config experiments/configs/dates.py:smoke --workdir /tmp/x \
        --config.num_train_steps=10 --config.optimizer.learning_rate=1e-3

`--config.<field>=<value>` overrides any field of the (locked) config. Running it again with the
same --workdir and config resumes from the newest checkpoint (see `attn.training.workdir` for what
may change). Several hosts: run the same command on each
with --coordinator_address, --num_processes and --process_id (or the ATTN_* / JAX_* environment
variables of attn.training.distributed). A bad flag or config value ends the program with one
line on stderr that says what to change.
"""

import errno
import logging as std_logging
import os
import sys
from pathlib import Path

# The repository root, so that config files can import `experiments.configs.common`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attn.extras import require

try:
    require("train", "experiments/train.py")
except ImportError as missing_extra:
    sys.exit(f"error: {missing_extra}")

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file (path[:argument]).")
flags.DEFINE_string("workdir", None, "directory of checkpoints, logs and plots.")
flags.DEFINE_string("coordinator_address", None, "multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "multi-host: index of this process.")
flags.DEFINE_bool("auto_detect_cluster", False, "multi-host: let JAX detect a TPU pod or SLURM.")


def fail(message: str) -> None:
    """Exit with status 1 and `message` as the last (single) line of stderr, at once: without
    waiting for background threads (a failed checkpoint write leaves orbax threads that never
    end)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def full_disk_message(error: Exception) -> str | None:
    """The line for an error caused by a full disk, else None."""
    text = " ".join(str(error).split())
    if getattr(error, "errno", None) != errno.ENOSPC and "No space left on device" not in text:
        return None
    filename = getattr(error, "filename", None)
    where = f"writing {filename}" if filename else text
    return (
        f"no space left on device ({where}); free some space and run the same command to "
        "resume from the last checkpoint, which is kept"
    )


class QuietOrbax(std_logging.Filter):
    """Leaves out orbax's own log records: the tracebacks from its threads of a failed background
    save (`Checkpointer` raises the failure as one `CheckpointError` line) and its warnings about
    the unfinished folder that such a save leaves behind. --verbosity shows them."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return "/orbax/" not in record.pathname


def drop_closed_event_loop_reports(default_hook):
    """A `sys.unraisablehook` that drops asyncio's "Event loop is closed" and hands every other
    report to `default_hook`. After a failed background save, tensorstore's threads still try to
    wake orbax's event loop, which is closed by then; each try is reported as unraisable (with no
    object, so as a bare traceback), dozens of them before the error line."""

    def hook(report) -> None:
        closed_loop = (
            isinstance(report.exc_value, RuntimeError)
            and str(report.exc_value) == "Event loop is closed"
        )
        if not closed_loop:
            default_hook(report)

    return hook


def config_argument(argv: list[str]) -> str | None:
    """The value of --config (path[:argument]) in `argv`, or None."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def check_config_file(value: str) -> None:
    """One line for a config file that is missing or has no get_config."""
    path = value.split(":", 1)[0]
    if not os.path.isfile(path):
        fail(f"--config: no file {path!r}; e.g. --config experiments/configs/dates.py")
    with open(path) as f:
        if "def get_config" not in f.read():
            fail(f"--config: {path!r} defines no get_config(arg) function")


def parse_flags(argv: list[str]) -> list[str]:
    value = config_argument(argv)
    if value is not None:
        check_config_file(value)
    try:
        rest = FLAGS(argv)
        if FLAGS.config is None:
            raise flags.Error("--config is required, e.g. --config experiments/configs/dates.py")
    except flags.Error as error:
        # A get_config that raised (e.g. an unknown :argument): ml_collections wraps its whole
        # traceback into the message; its last line is the error itself.
        last = str(error).strip().splitlines()[-1]
        fail(f"--config {value}: {last}" if "Traceback" in str(error) else error)
    except (AttributeError, KeyError) as error:  # --config.<name> of a field that does not exist
        name = str(error).strip("\"'")
        fail(f"the config has no field {name!r}; check the spelling of --config.<field> overrides")
    except Exception as error:  # a config file that does not load, a bad override value
        fail(f"{type(error).__name__}: {error}")
    if FLAGS.workdir is None:
        fail("--workdir is required, e.g. --workdir runs/dates")
    return rest


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; every option is a --flag")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and grain log every file at INFO
        std_logging.getLogger("absl").addFilter(QuietOrbax())
        # orbax's unfinished writes of a failed save ("Task exception was never retrieved")
        std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)
        sys.unraisablehook = drop_closed_event_loop_reports(sys.unraisablehook)
    from attn.data import DatasetNotFoundError
    from attn.training import distributed
    from attn.training.checkpoint import CheckpointError
    from attn.training.loop import train_and_evaluate
    from attn.training.steps import NonFiniteLossError

    try:
        distributed.initialize(
            FLAGS.coordinator_address,
            FLAGS.num_processes,
            FLAGS.process_id,
            auto_detect=FLAGS.auto_detect_cluster,
        )
        result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (
        ValueError,
        TypeError,
        DatasetNotFoundError,
        NonFiniteLossError,
        CheckpointError,
    ) as error:
        fail(full_disk_message(error) or error)
    except OSError as error:  # a metrics, TensorBoard or metadata file that cannot be written
        fail(full_disk_message(error) or f"{type(error).__name__}: {error}")
    if not result.finished:
        print(f"stopped at step {result.step}; run the same command to resume", file=sys.stderr)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
