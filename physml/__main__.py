"""``python -m physml …`` is the ``physml`` command; under torchrun it trains in data
parallel: ``torchrun --nproc_per_node=N -m physml train SPEC``."""
from .cli.app import main

if __name__ == "__main__":
    main()
