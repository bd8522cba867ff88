import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", "--output-format", "concise", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_layout_keeps_installed_names_under_hypera_nnunet():
    for d in ("hypera_nnunet", "trainers", "postprocessing", "tests", "docs", ".ci"):
        assert (ROOT / d).exists(), d
    assert not (ROOT / "trainers" / "__init__.py").exists()
    text = (ROOT / "pyproject.toml").read_text()
    assert 'include = ["hypera_nnunet*"]' in text
