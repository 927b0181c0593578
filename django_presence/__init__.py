from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("django-presence")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0"
