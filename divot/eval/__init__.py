"""Evaluation: benchmark tasks, metrics, judges and probes (library side).

``divot.eval.evaluate.evaluate(EvalConfig(...), model)`` runs a task of ``divot.eval.tasks`` (EgoSchema,
NExT-QA, MSVD-QA, ActivityNet-QA; ``EvalConfig`` in ``divot.eval.runner``). Also: ``answers`` (letter parsing,
normalised matches), ``bootstrap`` (confidence intervals), ``judge`` (the Video-ChatGPT judge: a local HF model
or an OpenAI-compatible URL), ``generation`` (CLIPSIM, FVD), ``metrics`` (PSNR, SSIM), ``lmms`` (the
lmms-eval model class).
"""
