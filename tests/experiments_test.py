"""Every experiment config's smoke variant trains 2 steps and evaluates (catalog datasets on
`attn.data.mock_catalog_data`), and `experiments/train.py` turns bad flags and config values into a
one-line error that says what to change.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import attn.data
from attn.training.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"

# (config file, argument, needs mock catalog data)
SMOKE = [
    ("dates", "smoke", False),
    ("rnn_seq2seq", "reverse,bahdanau,smoke", False),
    ("rnn_seq2seq", "sort,bottleneck,smoke", False),
    ("pydoc_lm", "smoke", False),
    ("pydoc_mlm", "smoke", False),
    ("digits_vit", "smoke", False),
    ("translate", "smoke", True),
    ("shakespeare_lm", "smoke", True),
    ("shakespeare_lm", "lm1b,smoke", True),
    ("imdb_bert", "smoke", True),
    ("cifar10_vit", "smoke", True),
]


def load_config(name: str, arg: str):
    spec = importlib.util.spec_from_file_location(f"config_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_every_config_file_has_a_smoke_test():
    configs = {p.stem for p in CONFIGS.glob("*.py")} - {"common"}
    assert configs == {name for name, _, _ in SMOKE}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("name, arg, mocked", SMOKE, ids=[f"{n}:{a}" for n, a, _ in SMOKE])
def test_smoke_config_trains_two_steps(name, arg, mocked, data_dir, tmp_path):
    config = load_config(name, arg)
    assert config.num_train_steps == 2
    config.dataset.data_dir = data_dir
    if mocked:
        with attn.data.mock_catalog_data(num_examples=24):
            result = train_and_evaluate(config, str(tmp_path))
    else:
        result = train_and_evaluate(config, str(tmp_path))
    assert result.finished and result.step == 2
    assert 0 < result.eval["loss"] < 100
    assert (tmp_path / "checkpoints" / "2").is_dir()
    assert (tmp_path / "metrics.jsonl").read_text().count('"split": "eval"') == 1
    assert list((tmp_path / "tensorboard").iterdir())
    if config.eval.num_attention_maps:
        assert list((tmp_path / "attention").glob("*.png"))
    if config.task == "seq2seq":
        assert 0 <= result.eval["exact_match"] <= 1
    if config.eval.bleu:
        assert 0 <= result.eval["bleu"] <= 100


def run_train(*flags: str, devices: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments/train.py"), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


SMOKE_FLAGS = ["--config", str(CONFIGS / "dates.py:smoke")]

# (flags, devices, the start of the one-line error)
BAD = [
    (["--config.model.family=GPT"], 1, "error: config.model.family must be one of"),
    (
        ["--config.optimizer.learning_rate=-0.1"],
        1,
        "error: config.optimizer.learning_rate must be > 0",
    ),
    (
        ["--config.batch_size=9"],
        2,
        "error: config.batch_size=9 is not divisible by the 2 batch shards",
    ),
    (["--config.dataset.name=imagenet"], 1, "error: config.dataset.name must be one of"),
    (["--config.batch_size=many"], 1, "error: flag --config.batch_size=many"),
    (["--config.learning_rate=0.1"], 1, "error: the config has no field 'learning_rate'"),
]


@pytest.mark.parametrize("flags, devices, message", BAD, ids=[b[2][7:40] for b in BAD])
def test_bad_value_is_a_one_line_error(flags, devices, message, tmp_path):
    result = run_train(*SMOKE_FLAGS, *flags, f"--workdir={tmp_path}", devices=devices)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "config, message",
    [
        ("missing.py", "error: --config: no file '"),
        ("no_get_config.py", "error: --config: '"),
        (str(CONFIGS / "dates.py:bogus"), "error: --config "),
    ],
)
def test_bad_config_file_or_argument_is_one_line(config, message, tmp_path):
    (tmp_path / "no_get_config.py").write_text("batch_size = 8\n")
    if not config.startswith(str(CONFIGS)):
        config = str(tmp_path / config)
    result = run_train("--config", config, f"--workdir={tmp_path / 'run'}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    if config.endswith(":bogus"):
        assert "unknown config option 'bogus'" in lines[-1]
    if config.endswith("no_get_config.py"):
        assert "defines no get_config" in lines[-1]


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    result = run_train(
        "--config",
        str(CONFIGS / "imdb_bert.py:smoke"),
        f"--config.dataset.data_dir={tmp_path / 'empty'}",
        f"--workdir={tmp_path / 'run'}",
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: TFDS dataset 'imdb_reviews' is not prepared"), last
    assert "prepare" in last and "Traceback" not in result.stderr


def test_config_argument_options_and_unknown_option():
    config = load_config("rnn_seq2seq", "sort,luong,smoke")
    assert (config.dataset.name, config.model.variant, config.num_train_steps) == (
        "sort",
        "luong",
        2,
    )
    assert load_config("rnn_seq2seq", "model=bottleneck").eval.num_attention_maps == 0
    with pytest.raises(ValueError, match="unknown config option 'smok'; the options are"):
        load_config("dates", "smok")
    with pytest.raises(ValueError, match="config option task must be one of"):
        load_config("rnn_seq2seq", "task=copy")


REFUSING_FINDER = """
import sys


class Refuse:
    \"\"\"Acts as if {module} were not installed.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "{module}" or name.startswith("{module}."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Refuse())
"""


@pytest.mark.parametrize(
    "module, distribution", [("orbax", "orbax-checkpoint"), ("ml_collections", "ml_collections")]
)
def test_missing_train_extra_names_the_extra_to_install(module, distribution, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(REFUSING_FINDER.format(module=module))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments/train.py"), *SMOKE_FLAGS,
         f"--workdir={tmp_path / 'run'}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: experiments/train.py needs the 'train' extra: pip install 'attn[train]' "
        f"(missing: {distribution})"
    )
    assert not (tmp_path / "run").exists()
