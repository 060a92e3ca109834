"""KV-cache placement on the wafer and its management from the host.

:class:`WaferKV` knows where every cached position of every layer and KV head sits (the
round-robin slots of :class:`~waferscale.plan.geometry.LayerGrid`), tracks the sequence
length, saves the cache to host arrays and restores it, bit for bit. :class:`KVSnapshot` is
a saved sequence; several can be kept on the host and swapped onto the wafer.
"""

from waferscale.kv.cache import KVCacheFull, KVSnapshot, WaferKV

__all__ = ["KVCacheFull", "KVSnapshot", "WaferKV"]
