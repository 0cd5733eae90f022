"""Model backends: each turns a :class:`LoadSpec` into a loaded model handle."""

from langchain_setraf.backends.base import Backend, LoadSpec, ModelHandle

__all__ = ["Backend", "LoadSpec", "ModelHandle"]
