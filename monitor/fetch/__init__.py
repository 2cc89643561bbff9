"""Stage 3, fetch: a Target becomes a FetchOutcome (facts, no judgement) over guarded transports.

Imports the probe and the vocabulary; network failures are values, never exceptions.
"""
