"""The trained students this repository ships under models/ (scripts/ship_model.py; issue 56): one list for the main
job, the benchmark, the compatibility check and the tests."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SHIPPED = {  # the main job's rows: the residual LITE student and its baseline, the MaxSim student of the same recipe
    "LITE student": MODELS_DIR / "debian-minilm-residual-student",
    "MaxSim student": MODELS_DIR / "debian-minilm-maxsim-student",
}


def shipped_models() -> dict[str, Path]:
    """The shipped students that are in this checkout (a folder with its weights)."""
    return {name: folder for name, folder in SHIPPED.items() if (folder / "model.safetensors").is_file()}
