"""Evaluate a checkpoint: pass@k, maj@k, sasc@k and avg@n on math benchmarks, with a report and plots.

Command::

    python scripts/evaluate.py --model_name_or_path Qwen/Qwen2.5-Math-1.5B --benchmarks math500 amc aime24 \\
        --n 16 --output_dir outputs/eval/base
    python scripts/evaluate.py --config eval.yaml   # CLI flags override the YAML

Same as ``sasc-ttrl eval``; see `sasc_ttrl.commands.eval` for the arguments and outputs.
"""

from sasc_ttrl.cli import run_command
from sasc_ttrl.commands.eval import main, make_parser

if __name__ == "__main__":
    run_command(make_parser, main, "scripts/evaluate.py")
