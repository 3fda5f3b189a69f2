"""``python -m sae_transfer atlas``: many finetunes of one base, one job each, the base's passes computed once.

``config``: ``atlas.yaml`` parsed into frozen objects; ``base_store``: the base's passes, content-keyed shards;
``job``: one base or finetune job; ``engine``: submitit's local, SLURM and debug executors; ``run``: the plan,
resumption and the merged table.
"""

from sae_transfer.atlas.config import EXAMPLE, AtlasConfig, parse, read
from sae_transfer.atlas.run import read_rows, run

__all__ = ["EXAMPLE", "AtlasConfig", "parse", "read", "read_rows", "run"]
