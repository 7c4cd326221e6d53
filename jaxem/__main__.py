"""``python -m jaxem``: the command line."""

import sys

from jaxem.cli import main

sys.exit(main())
