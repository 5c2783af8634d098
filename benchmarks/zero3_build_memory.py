"""Peak RSS per rank while building a ~200M-parameter Divot-LLM (Mistral: width 1024, 8 layers, vocab 32000):
whole on each rank (ZeRO-2 path) vs partitioned at construction (ZeRO-3, param offload, bf16).

    OMP_NUM_THREADS=1 PYTHONPATH=. torchrun --nproc_per_node 2 benchmarks/zero3_build_memory.py zero2|zero3
"""
import os
import resource
import sys

import torch

from divot.llm import DivotLLM, build_shapes_tokenizer, llm_preset
from divot.training.engine import deepspeed_config, init_distributed
from divot.training.optim import OptimConfig
from divot.training.zero import partitioned_build


def rss_mib() -> tuple[float, float]:
    with open("/proc/self/status") as f:
        now = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return now / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


mode = sys.argv[1]
init_distributed("gloo")
tokenizer = build_shapes_tokenizer()
config = llm_preset("tiny")
config.hidden_size = 1024
hf = config.base.to_hf(vocab_size=32000, hidden_size=1024, intermediate_size=3584, num_hidden_layers=8,
                       num_attention_heads=16, num_key_value_heads=8)
before = rss_mib()
extra = {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}, "offload_optimizer": {"device": "cpu"}}}
ds = deepspeed_config(OptimConfig(), 1, int(os.environ["WORLD_SIZE"]), extra, bf16=True)
torch.manual_seed(0)
if mode == "zero3":
    with partitioned_build(ds) as keep:
        model = DivotLLM.from_llm(hf, tokenizer, config)
else:
    model = DivotLLM.from_llm(hf, tokenizer, config)
now, peak = rss_mib()
numel = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
print(f"rank {os.environ['RANK']} {mode}: {numel / 1e6:.0f}M params ({numel * 4 / 2**20:.0f} MiB fp32); RSS before "
      f"build {before[0]:.0f} MiB, after {now:.0f} MiB, peak {peak:.0f} MiB", flush=True)
