"""Stage 1, corpus: a folder of Markdown files becomes Articles or CorpusErrors, never an exception.

Imports only the vocabulary (``monitor.types``, ``monitor.config``, ...).
"""
