"""`python -m introvae ...` is the same as the `introvae` command."""

import sys

from .cli import main

sys.exit(main())
