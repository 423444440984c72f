"""Report writers: Markdown tables, PNG / PDF plots and console tables of evaluations, builder comparisons and vote
comparisons. May import ``core`` and ``data``.
"""
