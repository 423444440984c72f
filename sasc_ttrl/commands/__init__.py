"""One module per ``sasc-ttrl`` command, each an ``Arguments`` dataclass, ``make_parser`` and ``main``.

Commands never import each other, nor the trainers of `sasc_ttrl.experimental` (the same layer): what two of them
share lives in a lower layer. Only `sasc_ttrl.cli` imports them.
"""
