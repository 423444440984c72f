"""Train with SASC-TTRL: ``accelerate launch --config_file accelerate_configs/ddp.yaml scripts/train.py --config R``.

A thin wrapper around `sasc_ttrl.commands.train` (same as ``sasc-ttrl train``), kept as a file so that
``accelerate launch`` has a script to start.
"""

from sasc_ttrl.cli import run_command
from sasc_ttrl.commands.train import main, make_parser

if __name__ == "__main__":
    run_command(make_parser, main, "scripts/train.py")
