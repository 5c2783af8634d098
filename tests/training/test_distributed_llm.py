"""Two processes under DeepSpeed ZeRO-2 (gloo on the CPU), launched by torchrun, against one process."""

import json
import os
import subprocess
import sys

import pytest
import torch

from divot.cli import main as divot_main
from divot.llm import DivotLLM
from tests.training.llm_world import CONFIGS, ROOT, make_world, sources_yaml
from tests.training.test_distributed import _free_port
from train.llm import main


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_zero2_matches_one_process(tmp_path):
    """Rank r reads global micro-batches r, r+2, ...; one process with 2 accumulation steps reads the same
    micro-batches, so every step's mean loss must agree, including after the first (sharded) update."""
    world = make_world(tmp_path / "world", num_train=16, num_held=2)
    common = ["--config", str(CONFIGS / "pretrain_shapes_tiny.yaml"),
              sources_yaml(world, {"caption": 1, "generation": 1}), "eval.annotations=null", "data.batch_size=2",
              "optim.warmup_steps=1", "optim.max_steps=3", "log_every=1", "checkpoint_every=0"]
    single = tmp_path / "single"
    assert main([*common, f"output_dir={single}", "optim.grad_accum=2"]) == 0
    dist_out = tmp_path / "zero2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "train" / "llm.py"), *common, f"output_dir={dist_out}",
           f"deepspeed.config_file={ROOT / 'configs' / 'deepspeed' / 'zero2.json'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    a = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (dist_out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in b] == [1, 2, 3]
    for x, y in zip(a, b, strict=True):
        assert x["samples"] == y["samples"]
        for key in ("loss", "lm_loss"):
            assert abs(x[key] - y[key]) < 1e-5, (x["step"], key, x[key], y[key])
    ckpt = dist_out / "checkpoints" / "step-00000003"
    assert any((ckpt / "deepspeed").glob("*optim_states.pt")), "ZeRO-2 optimizer shards missing"
    # The DeepSpeed checkpoint exports like a single-process one; the trainer's export agrees with it.
    assert divot_main(["export", str(ckpt), "--out", str(tmp_path / "exported")]) == 0
    exported = DivotLLM.from_pretrained(tmp_path / "exported").state_dict()
    final = DivotLLM.from_pretrained(dist_out / "model").state_dict()
    assert all(torch.equal(exported[k], final[k]) for k in final)
