"""Fine-tune vlm_ecg: ``accelerate launch finetune [--config finetune/configs/NAME.yaml] [--key value ...]``.

With no arguments it trains the embedded default (`configs/tiny-cpu.yaml`: the synthetic cohort, the tiny tower).
Keys and their help: ``python finetune --help``. The same command is ``vlm-ecg finetune``.
"""

import sys

from vlm_ecg.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
