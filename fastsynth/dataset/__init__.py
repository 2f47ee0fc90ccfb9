"""Writing and describing synthetic datasets (parquet shards or PNG folders, manifest, card)."""

from .writer import DatasetWriter, Rows, features, MANIFEST
from .card import render_card

__all__ = ["DatasetWriter", "Rows", "features", "MANIFEST", "render_card"]
