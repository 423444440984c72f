"""Sampling: models in, sampled records out -- generation backends (transformers, vLLM), per-token top-k entropy
capture, benchmark sampling into resumable files, guided re-sampling and the OpenAI-compatible client.

May import ``core`` and ``data``.
"""
