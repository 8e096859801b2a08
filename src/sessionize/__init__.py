"""sessionize: user sessions from activity streams, in real time and in batch."""

import os as _os

# Polars' allocator (jemalloc, configured by this variable when Polars is first imported) gives
# freed memory back to the kernel within seconds. A backfill frees and reallocates gigabytes
# every few seconds (each chunk's frames, then the sort and the aggregation), so every page came
# back as a fresh page fault: on this project's benchmark machine (a VM) that was a third of a
# 10 M-event backfill's time, in the kernel. Keeping freed pages 30 s for reuse removes most of
# it and still returns memory to the system once the work is over. Set the variable yourself to
# choose otherwise; it has no effect when Polars was imported before sessionize.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000")

__version__ = "0.1.0"
