"""The Colab notebooks: jupytext pairs in sync, one identical set-up cell derived from
pyproject.toml, badges that point at the pinned ref, and every notebook run at `ci` scale."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
import sys
import tomllib
import urllib.request

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLAB = ROOT / "colab"
SOURCES = sorted(COLAB.glob("[0-9][0-9]_*.py"))
SETUP_TITLE = "# @title Set-up:"
BANNED = ("colab_tpu", "COLAB_TPU_ADDR", "jax.lib.xla_bridge", "jax.experimental.shard_map")


def notebook(source: pathlib.Path) -> nbformat.NotebookNode:
    return nbformat.read(source.with_suffix(".ipynb"), as_version=4)


def setup_cells(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code" and SETUP_TITLE in c.source]


def setup_constants(cell: str) -> dict[str, str]:
    """The string constants the set-up cell assigns at its top level."""
    return {
        node.targets[0].id: node.value.value
        for node in ast.parse(cell).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


def project_urls() -> tuple[str, str, str]:
    """(Repository, Download, ref) from pyproject.toml [project.urls]."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    ref = re.fullmatch(r".*/archive/(.+)\.zip", urls["Download"])
    assert ref, f"[project.urls] Download must end in /archive/<ref>.zip, got {urls['Download']}"
    return urls["Repository"], urls["Download"], ref.group(1)


def ci_jax_version() -> str:
    """The jax pin of the constraints file CI installs on its main Python."""
    text = (ROOT / "constraints-3.11.txt").read_text()
    return re.search(r"^jax==(\S+)$", text, re.M).group(1)


def test_there_are_notebooks():
    assert [s.name for s in SOURCES][:1] == ["01_attention_from_scratch.py"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_with_its_percent_source_and_stripped(source):
    paired = notebook(source)
    text = jupytext.read(source)
    assert [(c.cell_type, c.source) for c in paired.cells] == [
        (c.cell_type, c.source) for c in text.cells
    ], f"run: jupytext --sync {source.relative_to(ROOT)}"
    assert paired.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert paired.metadata["accelerator"] == "TPU"
    assert paired.metadata["colab"]["gpuType"] == "V5E1"
    for cell in paired.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit it stripped"


def test_setup_cell_is_identical_in_every_notebook_and_comes_first():
    cells = {}
    for source in SOURCES:
        nb = notebook(source)
        found = setup_cells(nb)
        assert len(found) == 1, f"{source.name} needs exactly one set-up cell"
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code.source == found[0], f"{source.name}: the set-up cell must run first"
        cells[source.name] = found[0]
    assert len(set(cells.values())) == 1, "set-up cells differ: copy one cell into every notebook"


def test_setup_cell_and_badges_follow_pyproject_and_the_tested_jax():
    repository, download, ref = project_urls()
    owner_and_name = repository.removeprefix("https://github.com/")
    for source in SOURCES:
        nb = notebook(source)
        constants = setup_constants(setup_cells(nb)[0])
        assert constants["ATTN_REPOSITORY"] == repository
        assert constants["ATTN_DOWNLOAD"] == download
        assert constants["JAX_VERSION"] == ci_jax_version()
        header = nb.cells[0]
        assert header.cell_type == "markdown" and header.source.startswith(f"# {source.name[:2]} ·")
        badge = (
            "https://colab.research.google.com/github/"
            f"{owner_and_name}/blob/{ref}/colab/{source.stem}.ipynb"
        )
        assert f"]({badge})" in header.source, f"{source.name}: badge must link {badge}"
        assert f"]({badge})" in (COLAB / "README.md").read_text(), "list it in colab/README.md"
        assert "| `ci` |" in header.source and "| `full` |" in header.source, "runtime table"
        text = source.read_text()
        for banned in BANNED:
            assert banned not in text, f"{source.name} uses {banned}, gone from current JAX/Colab"


def run_setup_cell(monkeypatch, *, attn_importable: bool, jax_imported: bool) -> dict:
    """Run the set-up cell's code here, with attn hidden and jax (un)imported as asked."""
    cell = setup_cells(notebook(SOURCES[0]))[0]
    find_spec = importlib.util.find_spec
    if not attn_importable:
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *args: None if name == "attn" else find_spec(name, *args),
        )
    if not jax_imported:
        monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.delenv("ATTN_SOURCE", raising=False)
    namespace: dict = {}
    exec(compile(cell, "setup-cell", "exec"), namespace)
    return namespace


def one_line(error: BaseException) -> str:
    lines = error._render_traceback_()
    assert len(lines) == 1 and "\n" not in lines[0]
    return lines[0]


def test_setup_cell_stops_in_one_line_when_jax_was_imported_before_an_install(monkeypatch):
    with pytest.raises(Exception, match="jax was imported before this cell") as caught:
        run_setup_cell(monkeypatch, attn_importable=False, jax_imported=True)
    assert type(caught.value).__name__ == "SetupError"
    assert "Restart session" in one_line(caught.value)


def test_setup_cell_stops_in_one_line_without_source_or_reachable_url(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(Exception, match="ATTN_SOURCE is not set") as caught:
        run_setup_cell(monkeypatch, attn_importable=False, jax_imported=False)
    assert project_urls()[1] in one_line(caught.value)


@pytest.mark.parametrize(
    ("form", "environment", "expected"),
    [("auto", None, "auto"), ("full", None, "full"), ("full", "ci", "ci"), ("auto", "cpu", "cpu")],
)
def test_setup_cell_scale_environment_wins_over_the_form(monkeypatch, form, environment, expected):
    if environment is None:
        monkeypatch.delenv("ATTN_NOTEBOOK_SCALE", raising=False)
    else:
        monkeypatch.setenv("ATTN_NOTEBOOK_SCALE", environment)
    cell = setup_cells(notebook(SOURCES[0]))[0]
    cell = cell.replace('SCALE = "auto"  # @param', f'SCALE = "{form}"  # @param', 1)
    namespace: dict = {}
    exec(compile(cell, "setup-cell", "exec"), namespace)  # attn is importable: no install
    if expected == "auto":  # full where JAX sees an accelerator, cpu on a CPU
        expected = "cpu" if namespace["BACKEND"] == "cpu" else "full"
    assert namespace["SCALE"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs_and_passes_its_checks_at_ci_scale(source, monkeypatch, tmp_path):
    monkeypatch.setenv("ATTN_NOTEBOOK_SCALE", "ci")
    nb = notebook(source)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(
        output.get("text", "") for cell in nb.cells for output in cell.get("outputs", [])
    )
    assert "passed its checks at scale 'ci'" in printed
