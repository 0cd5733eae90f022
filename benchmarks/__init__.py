"""Benchmarks: langchain-setraf against the tools a user would pick instead."""
