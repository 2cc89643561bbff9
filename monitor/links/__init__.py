"""Stage 2, links: an Article becomes its URL occurrences (normalised) and findings; pure.

Imports only the vocabulary.
"""
