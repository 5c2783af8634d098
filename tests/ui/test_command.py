"""``divot ui``: registered in the CLI, its help loads neither gradio nor torch, and it fails in one line when
the port is bad or the ``ui`` extra is missing."""

import subprocess
import sys
from pathlib import Path

import divot.ui
from divot.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def test_ui_help_loads_neither_gradio_nor_torch():
    probe = ("import sys\nfrom divot.cli import main\ntry:\n    main(['ui', '--help'])\nexcept SystemExit:\n    pass\n"
             "print('LOADED', sorted(m for m in ('gradio', 'torch', 'selenium') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout and "--share" in proc.stdout and "--model" in proc.stdout
    assert "LOADED []" in proc.stdout
    assert "ui" in COMMANDS


def test_a_bad_port_is_an_error(capsys):
    assert main(["ui", "--port", "70000"]) == 2
    assert "--port must be in 1..65535, got 70000" in capsys.readouterr().err


def test_without_gradio_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setattr(divot.ui, "is_gradio_available", lambda: False)
    assert main(["ui", "--model", "shapes-tiny"]) == 2
    assert "pip install 'divot[ui]'" in capsys.readouterr().err
