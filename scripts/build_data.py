"""Offline selection pipeline and data builder: N candidates per question, selection methods, training rows.

Command::

    python scripts/build_data.py --model_name_or_path Qwen/Qwen2.5-Math-1.5B --dataset_name math500 \\
        --methods all --n_candidates 8 --temperature 0.6 --output_dir outputs/build
    python scripts/build_data.py --config build.yaml   # CLI flags override the YAML

Same as ``sasc-ttrl build``; see `sasc_ttrl.commands.build` for the arguments and outputs.
"""

from sasc_ttrl.cli import run_command
from sasc_ttrl.commands.build import main, make_parser

if __name__ == "__main__":
    run_command(make_parser, main, "scripts/build_data.py")
