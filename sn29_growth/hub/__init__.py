"""Hub side: the HubClient protocol, its huggingface_hub and local-directory implementations, the model store.

Import the concrete pieces from their modules (``sn29_growth.hub.hf_client``, ``.local``, ``.store``,
``.testing``); this package re-exports the protocol, the errors and the read path.
"""

from sn29_growth.hub.protocol import (
    DiskBudgetExceeded,
    DownloadIncomplete,
    HubClient,
    HubError,
    HubOffline,
    HubUnavailable,
    IntegrityError,
    RepoFile,
    RepoNotFound,
    RevisionNotFound,
    UnsupportedRepo,
    is_commit_sha,
)
from sn29_growth.hub.store import DiskBudget, ModelRef, ModelStore, fetch_model

__all__ = [
    "DiskBudget",
    "DiskBudgetExceeded",
    "DownloadIncomplete",
    "HubClient",
    "HubError",
    "HubOffline",
    "HubUnavailable",
    "IntegrityError",
    "ModelRef",
    "ModelStore",
    "RepoFile",
    "RepoNotFound",
    "RevisionNotFound",
    "UnsupportedRepo",
    "fetch_model",
    "is_commit_sha",
]
