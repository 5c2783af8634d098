"""Two processes under DeepSpeed ZeRO-2 (gloo on the CPU), launched by torchrun: train, checkpoint, resume."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from divot import Detokenizer
from divot.data.shapes.generate import generate_dataset

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(ROOT / "train" / "tokenizer.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_zero2_train_and_resume(tmp_path):
    generate_dataset(tmp_path / "shapes", num=8, seed=0, num_stories=0, progress=False)
    out = tmp_path / "run"
    common = ["--config", str(ROOT / "configs" / "tokenizer" / "t1_shapes_tiny.yaml"),
              f"data.train={tmp_path / 'shapes' / 'metadata.jsonl'}", f"data.val={tmp_path / 'shapes' / 'metadata.jsonl'}",
              f"output_dir={out}",
              f"deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero2.json'}", "data.batch_size=2",
              "optim.warmup_steps=1", "log_every=1", "eval.every=0", "eval.probe=false", "eval.num_val=2",
              "eval.num_samples=0", "checkpoint_every=1"]
    first = _launch([*common, "optim.max_steps=2"])
    assert first.returncode == 0, first.stderr[-4000:]
    ckpt = out / "checkpoints" / "step-00000002"
    assert (ckpt / "trainer.pt").is_file() and (ckpt / "rng-rank0.pt").is_file() and (ckpt / "rng-rank1.pt").is_file()
    assert any((ckpt / "deepspeed").glob("*optim_states.pt")), "ZeRO-2 optimizer shards missing"
    Detokenizer.from_pretrained(out / "detokenizer")
    second = _launch([*common, "optim.max_steps=3"])
    assert second.returncode == 0, second.stderr[-4000:]
    assert "resumed from" in second.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
