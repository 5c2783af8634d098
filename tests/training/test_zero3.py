"""Two processes under DeepSpeed ZeRO-3 with optimiser and parameter offload and DeepSpeed bf16 (gloo on the CPU):
train, checkpoint, resume exactly; the same losses as ZeRO-2 to 2 %.

Both runs start from a saved (random) base LLM whose vocabulary lacks 8 rows, so the build loads pretrained
weights under ZeRO-3 (partitioned at construction) and grows the embeddings with the Divot initialisation.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from divot.llm import DivotLLM, build_shapes_tokenizer, llm_preset
from divot.llm.tokens import INPUT_INIT_SCALE, OUTPUT_INIT_SCALE
from tests.training.llm_world import CONFIGS, ROOT, make_world, sources_yaml
from tests.training.test_distributed import _free_port

MISSING_ROWS = 8
# CPU Adam's float32 master weights of the resumed run may differ from the uninterrupted run's in the last bit.
RESUME_TOLERANCE = 1e-6
# ZeRO-3 vs ZeRO-2: the same loaded LLM, but the fresh projections are other random draws under ZeRO-3
# (divot/training/zero.py), so the runs agree only to this relative difference of each step's loss.
LOSS_TOLERANCE = 0.02
# Seed 9 puts a caption and a generation sample in every step, so every trained part gets a gradient each
# step: under ZeRO-3 (DeepSpeed 0.19.8) a part no rank used in a step is updated with a stale gradient in an
# uninterrupted run but a zero one after resuming, and the runs part ways (docs in divot/training/zero.py).
SEED = 9


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "train" / "llm.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-6000:]
    return run


def _metrics(run_dir) -> dict[int, dict]:
    return {m["step"]: m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def _base_llm(folder):
    """A tiny random Mistral saved with the shapes tokenizer, ``MISSING_ROWS`` embedding rows short of it."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_shapes_tokenizer(folder)
    torch.manual_seed(1)
    llm = AutoModelForCausalLM.from_config(llm_preset("tiny").base.to_hf(vocab_size=len(tokenizer) - MISSING_ROWS))
    llm.save_pretrained(folder)
    return llm.state_dict(), len(tokenizer)


@pytest.mark.slow
@pytest.mark.distributed
def test_zero3_offload_bf16_resumes_exactly_and_exports_like_zero2(tmp_path):
    world = make_world(tmp_path / "world", num_train=8, num_held=2)
    base, vocab = _base_llm(tmp_path / "base_llm")
    common = ["--config", str(CONFIGS / "pretrain_shapes_tiny.yaml"), sources_yaml(world, {"caption": 1, "generation": 1}),
              f"llm={tmp_path / 'base_llm'}", "eval.annotations=null", "data.batch_size=2", "precision=bf16",
              "optim.warmup_steps=1", "optim.max_steps=4", "log_every=1", "checkpoint_every=2", f"seed={SEED}",
              "deepspeed.offload_optimizer=true"]
    zero3 = [*common, "deepspeed.stage=3", "deepspeed.offload_param=true",
             f"deepspeed.config_file={ROOT / 'configs' / 'deepspeed' / 'zero3.json'}"]
    full, resumed, zero2 = tmp_path / "zero3", tmp_path / "zero3_resumed", tmp_path / "zero2"
    _torchrun([*zero3, f"output_dir={full}"])
    run = _torchrun([*zero3, f"output_dir={resumed}", f"resume={full / 'checkpoints' / 'step-00000002'}"])
    assert "resumed from" in run.stderr
    _torchrun([*common, f"output_dir={zero2}", f"deepspeed.config_file={ROOT / 'configs' / 'deepspeed' / 'zero2.json'}"])

    a, b, c = _metrics(full), _metrics(resumed), _metrics(zero2)
    assert sorted(a) == [1, 2, 3, 4] and sorted(b) == [3, 4]
    for step in (3, 4):  # the resumed run continues exactly
        assert b[step]["loss"] == a[step]["loss"] and b[step]["grad_norm"] == a[step]["grad_norm"], step
    assert all(abs(a[s]["loss"] - c[s]["loss"]) < LOSS_TOLERANCE * c[s]["loss"] for s in a), (a, c)

    ckpt = full / "checkpoints" / "step-00000004" / "deepspeed"
    assert any(ckpt.glob("*optim_states.pt")), "ZeRO-3 optimiser shards missing"
    z3 = DivotLLM.from_pretrained(full / "model").state_dict()
    z3_resumed = DivotLLM.from_pretrained(resumed / "model").state_dict()
    z2 = DivotLLM.from_pretrained(zero2 / "model").state_dict()
    assert z3.keys() == z2.keys() and all(t.dtype == torch.float32 for t in z3.values())
    assert all(torch.allclose(z3[k], z3_resumed[k], rtol=0, atol=RESUME_TOLERANCE) for k in z3)
    # The projections start from other random draws under ZeRO-3 (zero.py): same shapes, finite.
    assert all(torch.isfinite(z3[k]).all() and z3[k].shape == z2[k].shape for k in z2)
    # The Divot rows of the grown vocabulary started as mean / 3 x mean of the loaded rows: still close.
    emb, head = z3["llm.model.embed_tokens.weight"], z3["llm.lm_head.weight"]
    old = vocab - MISSING_ROWS
    assert emb.shape[0] == vocab
    start_in = INPUT_INIT_SCALE * base["model.embed_tokens.weight"].mean(0)
    start_out = OUTPUT_INIT_SCALE * base["lm_head.weight"].mean(0)
    assert (emb[old:] - start_in).abs().max() < 0.01 and (head[old:] - start_out).abs().max() < 0.01
