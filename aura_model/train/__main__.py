"""`python -m aura_model.train ...` (and `accelerate launch -m aura_model.train ...`): the `aura train` command."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
