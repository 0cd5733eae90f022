"""What llama.cpp says it allocated: the buffer sizes it logs when it loads a model.

llama.cpp logs one line per buffer it allocates, in MiB::

    load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
    load_tensors:          AMX model buffer size =    95.34 MiB
    llama_kv_cache:        CPU KV buffer size =    45.00 MiB
    llama_context:        CPU  output buffer size =     0.19 MiB
    sched_reserve:        CPU compute buffer size =    99.38 MiB

:func:`parse_buffer_lines` turns such lines into a
:class:`~langchain_setraf.memory.MemorySplit` of host memory (weights, KV cache, other);
buffers on a GPU (``CUDA0``, ``Metal``, ``Vulkan0``...) are left out. The in-process load
collects the lines with :func:`capture_llama_log`; a managed server's are in its log file.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Final

from langchain_setraf.memory import MemorySplit

__all__ = ["capture_llama_log", "parse_buffer_lines"]

_MIB: Final = 1 << 20
_LINE = re.compile(
    r"\b(?P<device>[A-Za-z0-9_]+)\s+(?P<what>model|KV|RS|output|compute)\s+buffer size\s*=\s*"
    r"(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB"
)
#: Buffer names of host memory (the CPU and its extra buffer types for repacked weights).
_HOST = re.compile(r"CPU|AMX|REPACK|KLEIDI|HOST", re.I)
_CAPTURE_LOCK = threading.Lock()


def parse_buffer_lines(lines: Iterable[str]) -> MemorySplit | None:
    """The host buffers named in llama.cpp's log ``lines``, as a split.

    ``model`` buffers count as weights, ``KV`` (and a recurrent model's ``RS``) as the KV
    cache, ``output`` and ``compute`` as other; the prompt cache is not a buffer llama.cpp
    reports (0). A log holding several loads (a restarted server's) gives the last one's.

    Returns:
        ``None`` when no line names a buffer (a log that was cut, or a quiet build).
    """
    parts = {"model": 0.0, "KV": 0.0, "RS": 0.0, "output": 0.0, "compute": 0.0}
    seen = False
    for line in lines:
        match = _LINE.search(line)
        if match is None or not _HOST.search(match["device"]):
            continue
        if match["what"] == "model" and seen and parts["KV"] + parts["compute"] > 0:
            parts = dict.fromkeys(parts, 0.0)  # a later load starts over
        seen = True
        parts[match["what"]] += float(match["mib"])
    if not seen:
        return None
    return MemorySplit(
        weights=round(parts["model"] * _MIB),
        kv_cache=round((parts["KV"] + parts["RS"]) * _MIB),
        prompt_cache=0,
        other=round((parts["output"] + parts["compute"]) * _MIB),
        source="llama.cpp",
    )


@contextlib.contextmanager
def capture_llama_log(llama_cpp: Any) -> Iterator[list[str]]:
    """Collect llama.cpp's log lines while the block runs (a load), then restore
    llama-cpp-python's own log callback; every line is still passed on to it, so
    ``verbose=True`` prints as before.

    Captures are serialised; a line another thread's llama.cpp call logs meanwhile is
    collected too (only buffer-size lines are read from it).
    """
    from llama_cpp import _logger

    lines: list[str] = []
    forward = _logger.llama_log_callback

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))
        forward(level, text, user_data)

    with _CAPTURE_LOCK:
        llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
        try:
            yield lines
        finally:
            llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
