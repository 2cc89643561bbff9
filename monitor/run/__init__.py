"""The wiring: a run takes the stages in order (corpus → links → fetch → verdict → store → alerts).

The only package that imports every stage; ``distributed``, ``jobs`` and ``cli`` build on it.
"""
