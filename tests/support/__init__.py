"""The test suite's shared parts: pytest plugins handing out helpers as fixtures (loaded by
``addopts`` in pyproject.toml), and plain modules of pure helpers a test module may import."""
