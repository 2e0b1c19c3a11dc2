"""glibc's allocator, tuned for tensors on the CPU: eval.allocator (the standalone eval package holds it, so both
command families share one implementation; lumiere_pl may import eval, never the reverse)."""
from eval.allocator import keep_freed_memory

__all__ = ["keep_freed_memory"]
