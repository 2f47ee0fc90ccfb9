"""A deterministic, seeded train/test split by file stem (independent of file order or count)."""

from __future__ import annotations

import hashlib


def make_split(stems: list[str], test_fraction: float = 0.1, seed: int = 0) -> dict:
    """Rank stems by a seeded hash; the lowest ``test_fraction`` go to test.

    The assignment of a stem depends only on (stem, seed) and the set size, never on listing order.
    """
    if not 0.0 <= test_fraction < 1.0:
        from ..errors import FastsynthError

        raise FastsynthError(f"--test-fraction {test_fraction}: must be in [0, 1)")
    ranked = sorted(stems, key=lambda s: (hashlib.sha256(f"{seed}:{s}".encode()).hexdigest(), s))
    n_test = int(round(len(stems) * test_fraction))
    test = sorted(ranked[:n_test])
    train = sorted(ranked[n_test:])
    return {"seed": seed, "test_fraction": test_fraction, "train": train, "test": test}
