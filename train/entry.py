"""What every training entry point shares: the ``--config`` + dotted-overrides command line, logging set up per
rank, and one-line errors (exit code 2) for bad configs and missing files."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable

from divot.training.engine import world_info

USER_ERRORS = (ValueError, FileNotFoundError, KeyError)  # ConfigError is a ValueError


def config_parser(doc: str, example: str) -> argparse.ArgumentParser:
    """``--config FILE [key.sub=value ...]`` (and the ``--local_rank`` the DeepSpeed launcher passes)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help=f"run config (YAML), e.g. {example}")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 data.batch_size=16")
    return parser


def run_training(name: str, train: Callable[[], dict]) -> int:
    """Configure logging (INFO on rank 0, WARNING elsewhere), run ``train``, log its final evaluation.

    A bad config or a missing file is logged as one line and gives exit code 2."""
    rank = world_info()[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger(name)
    try:
        result = train()
    except USER_ERRORS as e:
        log.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    if rank == 0 and result:
        log.info("final evaluation: %s", json.dumps(result, default=str))
    return 0
