"""``python -m clients.issuer ...``: the same as ``polder issuer ...``."""

import sys

from clients.issuer.cli import main

sys.exit(main())
