"""``python -m streamgmm``: the same as the ``streamgmm`` command."""

import sys

from streamgmm.cli import main

sys.exit(main())
