"""Allow `python -m rewardlab.cli`."""

import sys

from rewardlab.cli import main

sys.exit(main())
