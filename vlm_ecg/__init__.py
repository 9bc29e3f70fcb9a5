"""vlm_ecg."""
