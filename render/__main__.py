"""Render ECG files as 12-lead paper images: the same as `vlm-ecg render`.

    python render data/ecgs/ --out images/ --size 1024 --format npy --workers 2
    python render rec.hea --out images/ --page letter --dpi 200 --layout 3x4+II

Arguments are parsed by `vlm_ecg.cli`; `python render --help` lists them.
"""

import sys

from vlm_ecg.cli import main

sys.exit(main(["render", *sys.argv[1:]]))
