"""The test suite's pytest plugins: shared helpers handed out as fixtures (see ``addopts`` in
pyproject.toml), never imported by the test modules."""
