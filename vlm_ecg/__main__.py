"""`python -m vlm_ecg ...` is the `vlm-ecg` command."""

import sys

from .cli import main

sys.exit(main())
