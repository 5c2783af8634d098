"""Thin evaluation entry points: ``python -m eval.egoschema``, ``eval.msvd_qa``, ``eval.activitynet_qa``,
``eval.nextqa`` (each ``main(argv=None) -> int``; the same options as ``divot eval TASK``)."""
