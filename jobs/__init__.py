"""Scheduled work: the nightly check, the re-check of failing URLs and history pruning.

Each job is a plain async function usable on its own (``monitor run-job``); the
scheduler only decides when they run. Checks hold the ``corpus-check`` lease, so a
scheduled check never overlaps a CLI check, on this machine or another.
"""
