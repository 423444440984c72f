"""The pure core: answers and their equivalence, instability statistics, the votes, metrics, label diagnostics.

Lists in, numbers out. Imports nothing of the project above it and no torch / transformers / TRL (numpy, sympy via
math-verify, and the standard library only).
"""
