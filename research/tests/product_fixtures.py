"""The product tests' fixtures (tests/conftest.py: tiny models, the real tokenizer) for the research tests, loaded
under another module name so that the two test folders never share a `conftest` module."""

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "tests" / "conftest.py"
_spec = importlib.util.spec_from_file_location("product_conftest", _path)
_product = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_product)

ROOT = _product.ROOT
minilm_path, tokenizer, saved_tiny_model = _product.minilm_path, _product.tokenizer, _product.saved_tiny_model
tiny_encoder_dir = _product.tiny_encoder_dir
tiny_model, QUERIES, DOCUMENTS = _product.tiny_model, _product.QUERIES, _product.DOCUMENTS
