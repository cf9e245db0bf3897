"""Child networks, replicate-batched training and the training farm (see README "Training farm").

* :mod:`~bionas_bench.train.ops` - the ops of a space (registry ``OPS``), replicate-batched
* :mod:`~bionas_bench.train.network` - a network from a space's choices
* :mod:`~bionas_bench.train.batched` - batched training of one architecture's replicates
* :mod:`~bionas_bench.train.config` - :class:`TrainingConfig` from training manifests
* :mod:`~bionas_bench.train.farm` - :func:`run_farm`: every unit into a Zarr store (on the
  Dask clients of :mod:`bionas_bench.cluster`)
"""

from bionas_bench.train.config import TrainingConfig, load_training_config
from bionas_bench.train.farm import FarmProgress, FarmReport, plan_farm, run_farm

__all__ = ["FarmProgress", "FarmReport", "TrainingConfig", "load_training_config", "plan_farm", "run_farm"]
