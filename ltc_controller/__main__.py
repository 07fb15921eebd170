"""``python -m ltc_controller`` = ``ltc-controller``."""

import sys

if sys.argv[1:2] in (["node"], ["launch"]):
    # First, before the imports of a node process: a signal while they run is a clean stop.
    from ltc_controller import stop

    stop.install()

from ltc_controller.cli import main  # noqa: E402

sys.exit(main())
