"""Data: prompt styles, data sources and benchmarks, training data sets, saved rollouts, and the file store.

May import ``core`` (and ``datasets``); runs no model.
"""
