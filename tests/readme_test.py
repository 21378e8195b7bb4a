"""The README's kernel example runs as written."""

import pathlib
import re


def test_readme_kernel_example_runs():
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme[readme.index("## Example") :]
    code = re.search(r"```python\n(.*?)```", example, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["out"].shape == (2, 4, 8, 64)
    assert namespace["weights"].shape == (2, 8, 128, 128)
    assert namespace["ctx"].shape == (128, 64)
