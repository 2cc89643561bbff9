"""link-media-monitor: keeps a news corpus's links and media healthy."""

__version__ = "0.1.0"

__all__ = ["__version__"]
