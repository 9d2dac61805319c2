"""Object storage: backends (file, s3, memory) behind one protocol, and the bucket control plane.

* ``base.Storage`` — the backend protocol; ``backends.open_storage(url)`` builds one.
* ``keys`` — key and bucket-name validation (traversal defence).
* ``service.StorageService`` — tenant-scoped objects with quotas and versions over the backends.
* ``buckets`` — CBCP: bucket policy (backend, quota, lifecycle) and usage.
* ``lifecycle`` — expiry, version pruning and orphan reaping.
"""

from vsm_mcp.storage.backends import open_storage
from vsm_mcp.storage.base import ObjectInfo, ObjectPage, ObjectReader, Storage
from vsm_mcp.storage.keys import validate_bucket, validate_key
from vsm_mcp.storage.service import StorageService, service_for

__all__ = [
    "ObjectInfo", "ObjectPage", "ObjectReader", "Storage", "StorageService",
    "open_storage", "service_for", "validate_bucket", "validate_key",
]
