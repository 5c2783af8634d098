"""The chat-style commands (ask, caption, chat, generate, eval) and one bad-input case for every subcommand:
exit code 2 and a one-line ``divot CMD: error: ...`` on stderr, never a traceback."""

import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from divot.chat import Divot
from divot.cli import COMMANDS, main
from divot.commands import eval as eval_command
from divot.data.video import probe_video
from divot.llm.rerank import AnswerCheck

FAST = ["--device", "cpu", "--max-new-tokens", "4", "--greedy"]


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith(f"divot {command}: error:")]
    assert len(lines) == 1, err
    assert err.strip().splitlines()[-1] == lines[0]
    return lines[0]


# -- every subcommand: a bad input is a one-line error with exit code 2 ------------------------------------------
def _bad_inputs(tmp_path, model_dir, video):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_text("not a video")
    return {
        "data": (["data", "shapes", "--out", str(tmp_path / "d"), "--num", "-1"], "num"),
        "convert": (["convert", "tokenizer", "--tokenizer-ckpt", str(tmp_path / "Divot_tokenizer.bin"),
                     "--out", str(tmp_path / "o")], "Divot_tokenizer.bin"),
        "tokenize": (["tokenize", str(garbage), "--tokenizer", "tiny", "--out", str(tmp_path / "t.safetensors")],
                     "garbage.mp4"),
        "reconstruct": (["reconstruct", str(tmp_path / "missing.mp4"), "--tokenizer", "tiny", "--detokenizer", "tiny",
                         "--out", str(tmp_path / "r.gif")], "missing.mp4"),
        "cache-features": (["cache-features", "--tokenizer", "tiny", "--videos", str(tmp_path / "no_videos"),
                            "--out", str(tmp_path / "cache")], "no_videos"),
        "export": (["export", str(tmp_path / "no_run"), "--out", str(tmp_path / "e")], "no_run"),
        "demo": (["demo", "--model", str(tmp_path / "no_model"), "--out", str(tmp_path / "demo")], "no_model"),
        "ask": (["ask", str(tmp_path / "missing.mp4"), "What colour?", "--model", str(model_dir)], "missing.mp4"),
        "caption": (["caption", str(garbage), "--model", str(model_dir), *FAST], "garbage.mp4"),
        "chat": (["chat", str(video), "--model", str(tmp_path / "no_model")], "no_model"),
        "generate": (["generate", "a red circle", "--model", str(model_dir), "--out", str(tmp_path / "x.png")],
                     "x.png"),
        "eval": (["eval", "no-such-task"], "no-such-task"),
        "story": (["story", "Generate a story.", "--model", str(model_dir), "--out", str(tmp_path / "s"),
                   "--segments", "0"], "--segments"),
        "ui": (["ui", "--model", str(tmp_path / "no_model")], "no_model"),
        "serve": (["serve", "--model", str(tmp_path / "no_model")], "no_model"),
    }


def test_every_subcommand_has_a_bad_input_case(tmp_path):
    assert set(_bad_inputs(tmp_path, Path("model"), Path("video.mp4"))) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_input_is_a_one_line_error(command, tmp_path, divot_model_dir, shapes_video, capsys):
    argv, named = _bad_inputs(tmp_path, divot_model_dir, shapes_video)[command]
    assert main(argv) == 2
    assert named in _one_line_error(capsys, command)


def test_the_default_bundled_model_is_named_when_missing(shapes_video, capsys, monkeypatch, tmp_path):
    import divot.chat.bundled as bundled

    monkeypatch.setattr(bundled, "ASSETS_DIR", tmp_path / "assets")
    assert main(["ask", str(shapes_video), "What colour?"]) == 2
    assert "shapes-tiny" in _one_line_error(capsys, "ask")


# -- ask / caption / generate --------------------------------------------------------------------------------------
def test_ask_prints_the_answer_of_the_api(divot_model_dir, shapes_video, capsys):
    assert main(["ask", str(shapes_video), "What colour is it?", "--model", str(divot_model_dir), *FAST]) == 0
    expected = Divot.from_pretrained(divot_model_dir).ask(shapes_video, "What colour is it?", greedy=True,
                                                          max_new_tokens=4)
    assert capsys.readouterr().out == expected + "\n"


def test_caption_prints_one_caption(divot_model_dir, shapes_video, capsys):
    assert main(["caption", str(shapes_video), "--model", str(divot_model_dir), *FAST]) == 0
    assert len(capsys.readouterr().out.splitlines()) <= 1


def test_caption_rerank_prints_the_best_candidate_of_the_api(divot_model_dir, shapes_video, capsys):
    assert main(["caption", str(shapes_video), "--model", str(divot_model_dir), "--rerank", "3",
                 "--max-new-tokens", "4"]) == 0
    best = Divot.from_pretrained(divot_model_dir).caption_candidates(shapes_video, 3, max_new_tokens=4)[0]
    assert capsys.readouterr().out == best.text + "\n"
    assert main(["caption", str(shapes_video), "--model", str(divot_model_dir), "--rerank", "3",
                 "--instruction", "Describe it."]) == 2
    assert "drop --instruction" in capsys.readouterr().err
    check = "what shape is the object?=circle,square,triangle"
    assert main(["caption", str(shapes_video), "--model", str(divot_model_dir), "--rerank", "3",
                 "--max-new-tokens", "4", "--check", check, "--check-weight", "2"]) == 0
    shape = AnswerCheck("what shape is the object?", ("circle", "square", "triangle"))
    best = Divot.from_pretrained(divot_model_dir).caption_candidates(shapes_video, 3, max_new_tokens=4,
                                                                     checks=[shape], check_weight=2.0)[0]
    assert capsys.readouterr().out == best.text + "\n"
    assert main(["caption", str(shapes_video), "--model", str(divot_model_dir), "--rerank", "3",
                 "--check", "what shape?"]) == 2
    assert "expected 'QUESTION=ANSWER,ANSWER,...'" in capsys.readouterr().err


def test_generate_writes_the_video(divot_model_dir, tmp_path, capsys):
    out = tmp_path / "circle.gif"  # mp4 is covered by the API test
    assert main(["generate", "a red circle moves left", "--model", str(divot_model_dir), "--out", str(out),
                 "--steps", "2", "--num-clips", "2", "--device", "cpu"]) == 0
    assert probe_video(out).num_frames == 16  # 2 clips x 8 frames (tiny de-tokenizer)
    assert capsys.readouterr().out.strip() == str(out)


def test_generate_takes_the_model_generation_json_and_flags_override_it(divot_model_dir, tmp_path, monkeypatch):
    from divot.chat.generation_defaults import GenerationDefaults
    from divot.diffusion import Detokenizer
    from divot.llm import DivotLLM

    seen = {"decode": [], "llm": []}
    decode, generate_video = Detokenizer.decode, DivotLLM.generate_video

    def record_decode(self, tokens, **kwargs):
        seen["decode"].append(kwargs)
        return decode(self, tokens, **kwargs)

    def record_llm(self, prompt, **kwargs):
        seen["llm"].append((prompt, kwargs))
        return generate_video(self, prompt, **kwargs)

    monkeypatch.setattr(Detokenizer, "decode", record_decode)
    monkeypatch.setattr(DivotLLM, "generate_video", record_llm)
    root = tmp_path / "model"
    shutil.copytree(divot_model_dir, root)
    GenerationDefaults(sampler="ddim", num_steps=1, guidance_scale=2.0, guidance_rescale=0.0, eta=0.0,
                       prompt_format="pretrain").save_pretrained(root)
    argv = ["generate", "a red circle", "--model", str(root), "--out", str(tmp_path / "x.gif"), "--device", "cpu"]
    assert main(argv) == 0  # nothing given: the model's generation.json
    settings = {k: seen["decode"][-1][k] for k in ("sampler", "num_steps", "guidance_scale", "guidance_rescale",
                                                     "eta")}
    assert settings == {"sampler": "ddim", "num_steps": 1, "guidance_scale": 2.0, "guidance_rescale": 0.0, "eta": 0.0}
    prompt, llm_kwargs = seen["llm"][-1]
    assert llm_kwargs["force_video"] is True and "[INST]" not in Divot.from_pretrained(root).llm.tokenizer.decode(
        prompt.input_ids.tolist())  # the pretrain format
    assert main([*argv, "--sampler", "euler", "--steps", "2", "--eta", "0.5", "--prompt-format", "instruct",
                 "--open-video", "sample"]) == 0
    assert {k: seen["decode"][-1][k] for k in settings} == {**settings, "sampler": "euler", "num_steps": 2, "eta": 0.5}
    prompt, llm_kwargs = seen["llm"][-1]
    assert llm_kwargs["force_video"] is False
    assert prompt.input_ids.tolist() != seen["llm"][0][0].input_ids.tolist()  # the instruction format now


def test_generate_help_says_the_defaults_come_from_the_model(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--prompt-format {instruct,pretrain}" in text and "--open-video {force,sample}" in text
    for flag in ("--steps", "--guidance", "--rescale", "--eta", "--sampler"):
        assert flag in text
    assert text.count("default: the model's generation.json") >= 7


def test_story_writes_a_storyboard_and_prints_the_texts(divot_model_dir, tmp_path, capsys):
    out = tmp_path / "story"
    assert main(["story", "Generate a story about a red circle.", "--model", str(divot_model_dir), "--out", str(out),
                 "--segments", "2", "--steps", "2", "--formats", "gif", *FAST]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(out / "storyboard.html")
    assert sorted(p.name for p in out.iterdir()) == ["segment_01.gif", "segment_02.gif", "story.json",
                                                      "storyboard.html"]
    record = json.loads((out / "story.json").read_text())
    assert [s["text"] for s in record["segments"]] == printed[:2]
    assert probe_video(out / "segment_02.gif").num_frames == 8


# -- eval ------------------------------------------------------------------------------------------------------------
def test_eval_help_lists_the_registered_tasks_honestly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert ("no tasks" in out) == (not eval_command.TASKS)
    for name in eval_command.TASKS:
        assert name in out


def test_eval_dispatches_to_a_registered_task(monkeypatch, capsys):
    task = types.ModuleType("fake_eval_task")
    task.add_arguments = lambda parser: parser.add_argument("--limit", type=int, required=True)
    task.run = lambda args: print(f"limit={args.limit}") or 0
    monkeypatch.setitem(sys.modules, "fake_eval_task", task)
    monkeypatch.setattr(eval_command, "TASKS", {"fake": ("fake_eval_task", "a fake task")})
    assert main(["eval", "fake", "--limit", "3"]) == 0
    assert capsys.readouterr().out == "limit=3\n"
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "fake" in capsys.readouterr().out


# -- chat --------------------------------------------------------------------------------------------------------------
def test_chat_conversation_commands(divot_model_dir, shapes_video, monkeypatch, capsys, tmp_path):
    typed = ["/help", "What colour is it?", "/history", "/reset", "/history", f"/video {tmp_path / 'missing.mp4'}",
             f"/video {shapes_video}", "/bogus", "/quit", "never read"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(typed) + "\n"))
    assert main(["chat", str(shapes_video), "--model", str(divot_model_dir), *FAST]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith(f"Talking about {shapes_video}")
    assert "/video PATH" in out  # /help
    assert "1. Q: What colour is it?" in out and "(no turns yet)" in out
    assert "(conversation cleared)" in out and "now talking about" in out
    assert out.count("> ") == 9  # one prompt per line read; the line after /quit is never read
    assert "missing.mp4 does not exist" in captured.err and "unknown command '/bogus'" in captured.err


def test_chat_ends_at_end_of_input(divot_model_dir, shapes_video, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("What colour is it?\n"))
    assert main(["chat", str(shapes_video), "--model", str(divot_model_dir), *FAST]) == 0
    assert capsys.readouterr().out.count("> ") == 2


def _read_until(fd: int, marker: bytes, proc, timeout: float = 240.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {data[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"the chat ended before {marker!r} (exit {proc.poll()}); got {data[-2000:]!r}")
            data += chunk
        elif proc.poll() is not None:
            raise AssertionError(f"the chat exited ({proc.returncode}) before {marker!r}; got {data[-2000:]!r}")
    return data


def test_chat_in_a_terminal(divot_model_dir, shapes_video):
    """``divot chat`` driven through a pseudo-terminal: type a question, read the answer, /quit."""
    question = "What colour is it?"
    expected = Divot.from_pretrained(divot_model_dir).ask(shapes_video, question, greedy=True, max_new_tokens=4)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "dumb", "PYTHONIOENCODING": "utf-8"}  # dumb: no readline escape sequences
    proc = subprocess.Popen([sys.executable, "-m", "divot.cli", "chat", str(shapes_video), "--model",
                             str(divot_model_dir), *FAST], stdin=slave, stdout=slave, stderr=slave, env=env,
                            close_fds=True)
    os.close(slave)
    try:
        _read_until(master, b"> ", proc)
        os.write(master, question.encode() + b"\n")
        reply = _read_until(master, b"> ", proc).decode("utf-8", errors="replace").replace("\r\n", "\n")
        assert question in reply  # the terminal echoes what was typed
        answer = reply.split(question, 1)[1].rsplit("> ", 1)[0].strip("\n")
        assert answer == expected
        os.write(master, b"/quit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
