"""`python -m composer` is the same as the `image-composer` command."""

import sys

from composer.cli import main

sys.exit(main())
