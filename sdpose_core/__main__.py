"""`python -m sdpose_core ...` is the `sdpose` command (also what torchrun runs: torchrun -m sdpose_core train)."""

import sys

from sdpose_core.cli.main import main

sys.exit(main())
