"""``python -m ledger.audit``: the same as the ``venue-audit`` console script."""

import sys

from ledger.audit.cli import main

sys.exit(main())
