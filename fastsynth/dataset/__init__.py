"""Writing and describing synthetic datasets (parquet shards or PNG folders, manifest, card)."""

from .writer import DatasetWriter, Rows, features, MANIFEST, read_manifest, shard_files, shard_name
from .card import render_card

__all__ = ["DatasetWriter", "Rows", "features", "MANIFEST", "read_manifest", "shard_files", "shard_name", "render_card"]
