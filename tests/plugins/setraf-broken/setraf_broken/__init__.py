"""A plugin that cannot be imported: its native dependency is missing."""

raise ImportError("setraf-broken needs libimaginary.so, which is not installed")
