"""The CPU demo (``sasc-ttrl demo``) and what it needs: the task world, the tiny model, the SmolLM2 loader.

May import every layer below ``commands``; imported by nothing in the package but `sasc_ttrl.cli`.
"""
