"""Image probing: bytes in, format and pixel size out, incrementally and with a byte cap; pure.

Imports only the vocabulary; the fetcher feeds it.
"""
