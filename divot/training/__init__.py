"""Shared training machinery: optimisers and schedules, EMA, atomic resumable checkpoints, the engine that
runs a step on one process or under DeepSpeed ZeRO-2, metric logging."""
