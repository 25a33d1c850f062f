"""The prediction panel where people use it: JupyterLab in a real browser (headless Chromium driven
by Playwright). Skipped where Chromium or Playwright is missing; `make test` installs both."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (`make browser` installs it)")

DEMO_CELLS = [
    "import torch\n\nfrom minbert import analysis\nfrom minbert.bert import BertModel, load_tokenizer\n"
    "from minbert.models import MultitaskBert\n\ntorch.manual_seed(0)\n"
    "predictor = analysis.Predictor(MultitaskBert(BertModel.from_pretrained()), load_tokenizer())",
    "analysis.prediction_panel(predictor)",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_notebook(folder: Path) -> Path:
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
             for src in DEMO_CELLS]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernel}}
    path = folder / "panel.ipynb"
    path.write_text(json.dumps(notebook))
    return path


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on a free local port with a token, serving a demo notebook; stopped afterwards."""
    demo_notebook(tmp_path)
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within a minute")
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_prediction_panel_answers_a_typed_sentence_in_jupyterlab(jupyterlab):
    url, token = jupyterlab
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/panel.ipynb?token={token}")
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=60_000)  # the kernel, in the status bar
        page.get_by_role("menuitem", name="Run").click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        sentence = page.locator(".jp-OutputArea-output input[type='text']").first
        sentence.wait_for(timeout=120_000)
        sentence.fill("A dull, lifeless and badly acted film.")
        page.get_by_role("button", name="predict").click()
        answer = page.locator(".jp-OutputArea-output").filter(has_text="probabilities").last
        answer.wait_for(timeout=60_000)
        text = answer.inner_text()
        browser.close()
    assert "'label':" in text
    labels = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")
    assert any(f"'label': '{label}'" in text for label in labels), text
