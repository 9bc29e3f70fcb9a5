"""Serve the vlm_ecg web demo: ``python demo [--run RUN] [--host 127.0.0.1] [--port N] [--share]``.

With no ``--run`` it serves ``runs/default`` (trained by ``accelerate launch finetune``). Binds 127.0.0.1 unless
``--host`` says otherwise; a public share link only with ``--share``. The same command is ``vlm-ecg demo``.
"""

import argparse
import sys

from vlm_ecg.demo_app import launch_demo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python demo", description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run folder or hub id USER/NAME (default runs/default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it on the network)")
    parser.add_argument("--port", type=int, default=None, help="port (default: gradio's, 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live share link")
    args = parser.parse_args()
    sys.exit(launch_demo(args.run, host=args.host, port=args.port, share=args.share))
