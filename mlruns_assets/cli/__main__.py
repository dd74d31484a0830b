"""``python -m mlruns_assets.cli``: the same as the ``mlruns-assets`` command."""

import sys

from mlruns_assets.cli.main import main

sys.exit(main())
