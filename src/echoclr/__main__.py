"""``python -m echoclr`` (what ``torchrun -m echoclr`` runs)."""

import sys

from echoclr.cli import main

sys.exit(main())
