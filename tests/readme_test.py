"""The README's examples run as written."""

import pathlib
import re

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()


def run_example(section: str) -> dict:
    """Runs the first ```python block after the heading `section` and returns its namespace."""
    text = README[README.index(f"\n{section}\n") :]
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, f"README.md ({section})", "exec"), namespace)
    return namespace


def test_readme_kernel_example_runs():
    namespace = run_example("## Example")
    assert namespace["out"].shape == (2, 4, 8, 64)
    assert namespace["weights"].shape == (2, 8, 128, 128)
    assert namespace["ctx"].shape == (128, 64)


def test_readme_train_and_eval_example_runs():
    namespace = run_example("### Training and evaluation")
    assert namespace["logits"].shape == (1, 4, 256)


def test_readme_decoding_example_runs():
    namespace = run_example("## Decoding")
    assert namespace["tokens"].shape == (2, 23)
    assert namespace["result"].sequences.shape == (2, 4, 23)
    assert namespace["result"].scores.shape == (2, 4)
    assert namespace["attention"].shape == (2, 2, 22, 22)


def test_readme_rnn_example_runs():
    namespace = run_example("## RNN encoder-decoders")
    assert namespace["logits"].shape == (2, 4, 100)
    assert namespace["found"][("alignment",)].shape == (2, 4, 5)
    assert namespace["found"][("gates",)]["forget"].shape == (2, 4, 64)
    assert namespace["best"].shape == (2, 11)
