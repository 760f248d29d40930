"""SutazAI: shared library code for the Ray Serve application (settings, storage, engines, API)."""

__version__ = "0.1.0"
