"""``python -m ltc_controller`` = ``ltc-controller``."""

import sys

from ltc_controller.cli import main

sys.exit(main())
