"""Folders the tests read from outside the code: a wrong DIVOT_GOLDEN_DIR fails (never skips), and a missing
``../shared`` folder skips with its path outside CI but fails in CI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GOLDEN_FILES, golden_dir_problem, shared_folder

REPO = Path(__file__).resolve().parents[1]


def test_the_bundled_golden_set_is_complete():
    assert golden_dir_problem(REPO / "tests" / "fixtures" / "golden") is None


def test_a_missing_or_incomplete_golden_folder_is_named(tmp_path):
    missing = tmp_path / "golden_typo"
    assert str(missing) in golden_dir_problem(missing)
    (tmp_path / GOLDEN_FILES[0]).write_text("{}")
    problem = golden_dir_problem(tmp_path)
    assert f"golden folder {tmp_path} lacks {', '.join(GOLDEN_FILES[1:])} (" in problem


def test_a_mistyped_golden_dir_fails_the_golden_tests(tmp_path):
    missing = tmp_path / "golden_typo"
    env = {**os.environ, "DIVOT_GOLDEN_DIR": str(missing)}
    golden_test = "tests/diffusion/test_schedule.py::test_timestep_embedding_matches_reference"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", golden_test],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert f"golden folder {missing} does not exist" in output
    assert "1 error" in output and "skipped" not in output


def test_a_missing_shared_folder_skips_with_its_path_outside_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=str(tmp_path / "benchmarks" / "a.json")):
        shared_folder(tmp_path / "benchmarks", "a.json", "the real files")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        shared_folder(tmp_path / "benchmarks", "a.json", "the real files")


def test_a_missing_shared_folder_fails_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{tmp_path / 'benchmarks' / 'a.json'}.*CI is set"):
        shared_folder(tmp_path / "benchmarks", "a.json", "the real files")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "a.json").write_text("{}")
    assert shared_folder(tmp_path / "benchmarks", "a.json", "the real files") == tmp_path / "benchmarks"
