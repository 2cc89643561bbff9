"""Stage 1, corpus: a folder of Markdown files becomes Articles or CorpusErrors, never an exception.

``discover`` finds the files, ``read`` turns one into an Article, ``yaml_safe`` parses its
frontmatter. Imports only the vocabulary (``monitor.types``, ``monitor.config``, ...).
"""
