"""The repository's formatter and linter settings (pyproject.toml, ruff with line-length 119) hold everywhere."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def ruff(*args):
    executable = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
    command = [executable] if executable else [sys.executable, "-m", "ruff"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("check", [("check", "."), ("format", "--check", ".")], ids=["lint", "format"])
def test_ruff_is_clean(check):
    result = ruff(*check)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_training_function_stays_at_the_size_of_accelerates_examples():
    """accelerate's nlp_example keeps its training function near 80 lines; this project's stays at 100 or fewer."""
    import inspect

    import train_accelerate

    assert len(inspect.getsource(train_accelerate.training_function).splitlines()) <= 100
