"""The vlm_ecg demo as a module-level Gradio app: ``gradio demo/app.py`` (auto-reload) or ``python demo/app.py``.

Serves the default run (``runs/default``, trained by ``accelerate launch finetune``) on 127.0.0.1. To choose a run,
host or port, use ``python demo --run RUN --host H --port N``; the page itself is `vlm_ecg.demo_app.build_demo`.
"""

from vlm_ecg.demo_app import MAX_FILE_SIZE, build_demo, quiet_environment
from vlm_ecg.predict import Predictor, resolve_run

quiet_environment()  # before gradio and huggingface_hub are imported
try:
    predictor = Predictor.from_pretrained(resolve_run(None))
except (OSError, ValueError) as exc:
    raise SystemExit(f"error: {exc}") from None

demo = build_demo(predictor)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", max_file_size=MAX_FILE_SIZE)
