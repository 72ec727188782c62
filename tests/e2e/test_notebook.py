"""The quickstart notebook runs top to bottom against the deployed Akasha."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook(akasha, monkeypatch):
    monkeypatch.setenv("AKASHA_URL", akasha["url"])
    monkeypatch.setenv("AKASHA_API_KEY", akasha["admin_key"])
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(o.get("text", "") for o in outputs)
    assert "stored 300 memories" in text
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("similarity" in table for table in html)
    assert any("image/png" in o.get("data", {}) for o in outputs)
