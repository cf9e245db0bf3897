"""A softmax-per-layer policy controller, the stand-in that sweep and regress tests subclass.

Each test module adds its own learning rule (``_tell``) and parameters; what a policy
controller must offer the sweep machinery (``policy()``, asking by sampling the
policy, recommending the per-layer argmax) is written once here.
"""

from __future__ import annotations

import numpy as np

from bionas_bench.controllers.base import Controller


class SoftmaxPolicy(Controller):
    """Independent softmax over each layer's choices; ``logits`` are what subclasses learn."""

    def __init__(self, space, seed=0, **hp):
        super().__init__(space, seed, **hp)
        self.logits = [np.zeros(r) for r in space.radices]
        self.baseline: float | None = None

    def policy(self):
        return [np.exp(lg - lg.max()) / np.exp(lg - lg.max()).sum() for lg in self.logits]

    def _ask(self, n):
        probs = self.policy()
        choices = np.stack([self.rng.choice(len(p), size=n, p=p) for p in probs], axis=1)
        return self.space.encode(choices.astype(np.int64))

    def recommend(self):
        return int(self.space.encode(np.array([int(np.argmax(lg)) for lg in self.logits])))
