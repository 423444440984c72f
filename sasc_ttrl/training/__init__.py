"""The TRL glue: `SASCConfig`, `SASCTrainer`, the reward registry, pre-run checks, and the SFT runner used by the
trainers on builder data.

May import ``core``, ``data`` and ``sampling``; never ``selection``.
"""
