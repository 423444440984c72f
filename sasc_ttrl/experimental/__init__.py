"""The trainers built on the builder's data, one folder per feature (``prm``, ``calibrate``, ``self_improve``),
each a ``config.py`` (its arguments dataclass) and a ``runner.py`` (``make_parser`` and ``main`` of its
``sasc-ttrl`` command, and the code it runs).

The features never import each other: what two of them share lives in a lower layer (``training``, ``selection``,
``sampling``, ``data``, ``core``). Only `sasc_ttrl.cli` imports them.
"""
