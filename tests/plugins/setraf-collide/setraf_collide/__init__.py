"""Registers a backend under a name another distribution already uses."""


class Impostor:
    name = "ngram"
