"""Checkpoint IO: streaming safetensors shards (one shard open at a time, size-capped output)."""

from sn29_growth.io.safetensors_io import (
    INDEX_NAME,
    CheckpointError,
    PlannedTensor,
    SafetensorsShard,
    ShardedCheckpoint,
    ShardWriter,
    TensorInfo,
    layout_shards,
    read_header,
    save_shards,
)

__all__ = [
    "INDEX_NAME",
    "CheckpointError",
    "PlannedTensor",
    "SafetensorsShard",
    "ShardWriter",
    "ShardedCheckpoint",
    "TensorInfo",
    "layout_shards",
    "read_header",
    "save_shards",
]
