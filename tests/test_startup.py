"""Start-up stays light: ``import divot``, ``divot --help`` and ``divot data shapes`` leave the heavy libraries
unloaded, and every public name of the lazily importing packages still resolves. Each check runs in a fresh
Python process, since this one has long imported everything. (How fast start-up is: benchmarks/startup_time.py.)"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("diffusers", "transformers", "timm", "deepspeed", "datasets", "peft")
PACKAGES = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "divot").rglob("__init__.py"))

# Runs `source`, then (also when it exits, as --help does) writes the heavy modules it loaded as the last line.
PROBE = """\
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nLOADED " + json.dumps(sorted(
    m for m in {modules!r} if m in sys.modules)) + "\\n"))
{source}
"""


def loaded_after(source: str, cwd: Path = ROOT) -> tuple[list[str], subprocess.CompletedProcess]:
    """The modules of HEAVY + torch that a fresh ``python -c source`` has imported when it ends."""
    probe = PROBE.format(modules=(*HEAVY, "torch"), source=source)
    proc = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("LOADED ")]
    assert lines, f"the probe did not finish: {proc.stderr[-2000:]}"
    return json.loads(lines[-1].removeprefix("LOADED ")), proc


def cli(*argv: str) -> str:
    """Source that runs ``divot ARGV`` as the console script does."""
    return f"import sys; from divot.cli import main; sys.exit(main({list(argv)!r}))"


def test_import_divot_loads_no_heavy_library():
    loaded, proc = loaded_after("import divot, divot.chat, divot.diffusion, divot.llm, divot.tokenizer")
    assert proc.returncode == 0, proc.stderr
    assert not set(loaded) & set(HEAVY), loaded


@pytest.mark.parametrize("argv", [("--help",), ("data", "shapes", "--help"), ("generate", "--help"),
                                  ("story", "--help"), ("demo", "--help")], ids=" ".join)
def test_help_loads_neither_torch_nor_heavy_libraries(argv):
    from divot.cli import COMMANDS

    loaded, proc = loaded_after(cli(*argv))
    assert proc.returncode == 0, proc.stderr
    assert "usage: divot" in proc.stdout
    assert loaded == [], loaded
    if argv == ("--help",):  # every command is listed, though none of their modules was imported
        assert all(name in proc.stdout for name in COMMANDS)


def test_the_console_script_module_answers_help():
    proc = subprocess.run([sys.executable, "-m", "divot.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "usage: divot" in proc.stdout, proc.stderr


def test_data_shapes_generates_without_the_model_libraries(tmp_path):
    loaded, proc = loaded_after(cli("data", "shapes", "--out", str(tmp_path / "world"), "--num", "2",
                                    "--no-progress"))
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "world" / "metadata.jsonl").read_text().splitlines()) == 2
    assert not set(loaded) & set(HEAVY), loaded


def test_a_chosen_command_still_parses_its_options():
    from divot.cli import build_parser, chosen_command

    assert chosen_command(["-v", "data", "shapes", "--out", "x"]) == "data"
    assert chosen_command(["--help"]) is None and chosen_command(["nonsense"]) is None
    args = build_parser(["data"]).parse_args(["data", "shapes", "--out", "x", "--num", "3"])
    assert (args.command, args.num, callable(args._run)) == ("data", 3, True)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    names = getattr(module, "__all__", [])
    for name in names:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module), f"{package}.{name} missing from dir()"
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


def test_lazy_names_are_the_defining_modules_objects():
    import divot
    from divot.chat.model import Divot
    from divot.diffusion.detokenizer import Detokenizer
    from divot.llm.model import DivotLLM
    from divot.tokenizer.model import VideoTokenizer

    assert (divot.Divot, divot.Detokenizer, divot.DivotLLM, divot.VideoTokenizer) == (
        Divot, Detokenizer, DivotLLM, VideoTokenizer)
    assert divot.diffusion.Detokenizer is Detokenizer and divot.llm.DivotLLM is DivotLLM
    from divot import Video as video_class
    from divot.chat import Video

    assert video_class is Video


def test_sampler_names_match_the_schedulers():
    from divot.diffusion.config import SAMPLERS
    from divot.diffusion.schedule import SCHEDULERS

    assert SAMPLERS == ("reference", *sorted(SCHEDULERS))
