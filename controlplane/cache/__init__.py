"""The control plane's resource cache: each resource version validated (by its source) and
serialised once, shared resource sets, per-node views made of references to them, and change
notifications that wake only the streams whose view changed.

- `resource.py`: `CachedResource`, one resource version packed once;
- `content.py`: `ResourceSet` (shared, immutable) and `Overlay` (a view's own on top);
- `view.py`: `View`, every type for one node or group (`Snapshot` is its older name);
- `store.py`: `ResourceCache`, the write API (`put_resources`, `set_view`, ...), node -> view
  mapping and subscriptions;
- `encoder.py`: response bytes from the cached pieces.
"""

from controlplane.cache.content import Overlay, ResourceSet, TypeContent
from controlplane.cache.encoder import ResponseEncoder
from controlplane.cache.resource import CachedResource, set_version
from controlplane.cache.store import (
    DEFAULT_GROUP,
    ResourceCache,
    ViewSpec,
    group_for,
    node_group_candidates,
)
from controlplane.cache.view import TYPE_URLS, View

Snapshot = View
SnapshotCache = ResourceCache

__all__ = ["DEFAULT_GROUP", "TYPE_URLS", "CachedResource", "Overlay", "ResourceCache",
           "ResourceSet", "ResponseEncoder", "Snapshot", "SnapshotCache", "TypeContent", "View",
           "ViewSpec", "group_for", "node_group_candidates", "set_version"]
