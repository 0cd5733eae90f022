"""Attack tests: other local users (real uids in private mount namespaces), web clients,
hostile files and catalogues. See ``conftest.py`` for the fixtures."""
