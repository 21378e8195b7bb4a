"""Run the notebooks in a replica of Colab's Python environment, through their real set-up cell.

    python colab/replica.py [--python python3.13] [--venv .venv-colab]

1. Builds a fresh venv on Colab's Python (3.13) holding Colab's own versions of the packages
   attn meets there (`COLAB_PACKAGES`, from googlecolab/backend-info's `pip-freeze.tpu.txt` of
   2026-08-19): jax 0.7.2 and flax 0.11.2, older than attn needs, and the numpy, ipykernel and
   ipython that must survive the set-up.
2. Registers that venv as a Jupyter kernel and runs every `colab/NN_*.ipynb` in it at `ci`
   scale, from an empty working directory, with ATTN_SOURCE = a copy of this checkout's files
   (tracked and untracked, not ignored). The first notebook's set-up cell must install
   `jax==V` and attn (the CPU runtime path); the others must find attn installed.
3. Checks that every notebook passed its own checks and that numpy, ipykernel and ipython are
   still Colab's versions afterwards (Colab would need a restart otherwise).

Prints one line per step with its time; exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNEL = "colab-replica"
# Colab's TPU runtime, googlecolab/backend-info@a724079 (2026-08-19), the packages attn meets.
COLAB_PACKAGES = {
    "jax": "0.7.2",
    "jaxlib": "0.7.2",
    "flax": "0.11.2",
    "optax": "0.2.8",
    "orbax-checkpoint": "0.12.4",
    "chex": "0.1.90",
    "tensorflow-datasets": "4.9.10",
    "grain": "0.2.18",
    "array_record": "0.8.3",
    "numpy": "2.1.3",
    "matplotlib": "3.10.0",
    "scikit-learn": "1.6.1",
    "absl-py": "1.4.0",
    "ipython": "7.34.0",
    "ipykernel": "6.17.1",
}
MUST_SURVIVE = ("numpy", "ipykernel", "ipython")


def step(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)


def run(command: list[str], **kwargs) -> str:
    """Run a command; on failure print its output without pip's "is ignored" noise and exit."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode:
        output = result.stdout + result.stderr
        print("\n".join(line for line in output.splitlines() if "is ignored" not in line))
        sys.exit(f"failed (exit {result.returncode}): {' '.join(command)}")
    return result.stdout


def installed_versions(python: pathlib.Path, names: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, sys\n"
        "for n in sys.argv[1:]:\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: print(n, None)"
    )
    lines = run([str(python), "-c", code, *names]).split("\n")
    return dict(line.split(" ", 1) for line in lines if line)


def build_venv(interpreter: str, venv: pathlib.Path) -> pathlib.Path:
    """A fresh venv with Colab's versions and its kernel registered; returns its python."""
    shutil.rmtree(venv, ignore_errors=True)
    run([interpreter, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    version = run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    if version.strip() != "3.13":
        sys.exit(f"Colab runs Python 3.13; {interpreter} is Python {version.strip()}")
    pins = [f"{name}=={version}" for name, version in COLAB_PACKAGES.items()]
    run([str(python), "-m", "pip", "install", "-q", *pins])
    run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", KERNEL])
    return python


def copy_checkout(destination: pathlib.Path) -> None:
    """The checkout's tracked and untracked (not ignored) files, so pip builds outside it."""
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def execute(notebook: pathlib.Path, workdir: pathlib.Path) -> str:
    """Run the notebook in the replica kernel; returns everything its cells printed."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name=KERNEL, resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        sys.exit(f"{notebook.name} failed in the replica:\n{error}")
    return "".join(
        output.get("text", "") for cell in nb.cells for output in cell.get("outputs", [])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3.13", help="a Python 3.13 interpreter")
    parser.add_argument("--venv", default=str(ROOT / ".venv-colab"), help="venv to (re)build")
    args = parser.parse_args()
    started = time.perf_counter()
    python = build_venv(args.python, pathlib.Path(args.venv).resolve())
    step(f"built {args.venv} with Colab's versions", started)
    before = installed_versions(python, MUST_SURVIVE)
    notebooks = sorted((ROOT / "colab").glob("[0-9][0-9]_*.ipynb"))
    with tempfile.TemporaryDirectory() as scratch:
        source, workdir = pathlib.Path(scratch, "attn"), pathlib.Path(scratch, "work")
        copy_checkout(source)
        workdir.mkdir()
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "CI"):
            os.environ.pop(name, None)
        os.environ.update(
            ATTN_NOTEBOOK_SCALE="ci",
            ATTN_SOURCE=str(source),
            JUPYTER_PATH=str(pathlib.Path(args.venv).resolve() / "share" / "jupyter"),
            PYDEVD_DISABLE_FILE_VALIDATION="1",  # ipykernel's debugger notice on Python 3.13
        )
        for index, notebook in enumerate(notebooks):
            printed = execute(notebook, workdir)
            installed = "Installing jax==" in printed
            if installed != (index == 0):
                sys.exit(
                    f"{notebook.name}: the set-up cell should "
                    f"{'install attn' if index == 0 else 'find attn installed'}\n{printed}"
                )
            if "passed its checks at scale 'ci'" not in printed:
                sys.exit(f"{notebook.name} did not pass its checks:\n{printed}")
            step(
                f"{notebook.name} passed at ci scale{' (installed attn)' if installed else ''}",
                started,
            )
    after = installed_versions(python, (*MUST_SURVIVE, "jax", "jaxlib", "flax", "attn"))
    changed = {
        name: (before[name], after[name]) for name in MUST_SURVIVE if before[name] != after[name]
    }
    if changed or before != {name: COLAB_PACKAGES[name] for name in MUST_SURVIVE}:
        sys.exit(f"the set-up changed Colab's packages (before, after): {changed or before}")
    step(f"numpy, ipykernel and ipython are still Colab's; now {after}", started)


if __name__ == "__main__":
    main()
