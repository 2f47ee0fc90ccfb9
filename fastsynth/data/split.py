"""A deterministic, seeded train/test split by file stem (independent of file order or count), optionally by
group (a patient, an examination) so that related images never sit on both sides."""

from __future__ import annotations

import hashlib
import re

AUTO_GROUP = re.compile(r"^([^-_]+)[-_]")


def make_split(stems: list[str], test_fraction: float = 0.1, seed: int = 0, group_by: str | None = None) -> dict:
    """Rank stems by a seeded hash; the lowest ``test_fraction`` go to test.

    The assignment of a stem depends only on (stem, seed) and the set size, never on listing order.
    ``group_by`` (see :func:`group_stems`): whole groups are ranked by the hash of their name and go to test, in
    rank order, until at least ``test_fraction`` of the stems are there; the groups are stored in the split.
    """
    if not 0.0 <= test_fraction < 1.0:
        from ..errors import FastsynthError

        raise FastsynthError(f"--test-fraction {test_fraction}: must be in [0, 1)")
    groups = group_stems(stems, group_by)
    if groups is None:
        ranked = sorted(stems, key=lambda s: (hashlib.sha256(f"{seed}:{s}".encode()).hexdigest(), s))
        n_test = int(round(len(stems) * test_fraction))
        test = sorted(ranked[:n_test])
        train = sorted(ranked[n_test:])
        return {"seed": seed, "test_fraction": test_fraction, "train": train, "test": test}
    rule, by_group = groups
    n_test = int(round(len(stems) * test_fraction))
    test: list[str] = []
    for g in sorted(by_group, key=lambda g: (hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(), g)):
        if len(test) >= n_test:
            break
        test += by_group[g]
    test_set = set(test)
    return {"seed": seed, "test_fraction": test_fraction, "train": sorted(s for s in stems if s not in test_set),
            "test": sorted(test), "group_by": rule, "groups": {g: sorted(v) for g, v in sorted(by_group.items())}}


def group_stems(stems: list[str], group_by: str | None) -> tuple[str, dict] | None:
    """(rule, {group: [stems]}) or None for no grouping.

    - None / "" / "none": no grouping (each stem alone).
    - "auto": the part before the first ``-`` or ``_`` (``SCD0000101-0059`` -> ``SCD0000101``, ``010_2HC`` ->
      ``010``), used only when every stem has one and it joins some stems into one group (and leaves at least two
      groups); otherwise no grouping.
    - anything else: a regular expression searched in each stem; its first group (or the whole match) names the
      group; a stem it does not match is an error.
    """
    from ..errors import FastsynthError

    if not group_by or group_by == "none":
        return None
    out: dict[str, list[str]] = {}
    if group_by == "auto":
        for s in stems:
            m = AUTO_GROUP.match(s)
            if m is None:
                return None
            out.setdefault(m.group(1), []).append(s)
        if len(out) < 2 or len(out) == len(stems):
            return None
        return "auto: the part before the first - or _", out
    try:
        pat = re.compile(group_by)
    except re.error as exc:
        raise FastsynthError(f"--group-by {group_by!r}: not a regular expression ({exc})") from None
    for s in stems:
        m = pat.search(s)
        if m is None:
            raise FastsynthError(f"--group-by {group_by!r} does not match the stem {s!r}; every stem needs a group")
        out.setdefault(m.group(1) if pat.groups else m.group(0), []).append(s)
    return group_by, out
