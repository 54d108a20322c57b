"""The head explorer: its data against the model and heads.csv on a one-layer model, a
two-layer model with positions and an MLP model; its page in a real browser (headless
Chromium through selenium and Debian's chromedriver), with no request leaving the page."""

import json
import re
import shutil

import pandas as pd
import pytest
import torch

from headcoop.cli import main
from headcoop.explore.head_data import qk_circuit

from .test_robustness import TINY

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHAPES = {
    "one_layer": ["--d-model", "8", "--n-heads", "3"],
    "two_layers_positions": [
        *("--n-layers", "2", "--positional", "--n-ctx", "64"),
        *("--d-model", "8", "--n-heads", "2", "--d-head", "2"),
    ],
    "mlp": ["--d-model", "8", "--n-heads", "2", "--d-mlp", "16"],
}


@pytest.fixture(scope="module", params=list(SHAPES))
def explored(request, tmp_path_factory):
    """A Count01 model of each shape, trained for an epoch, then `headcoop explore`d."""
    root = tmp_path_factory.mktemp(request.param)
    run = root / "run"
    args = ["--task-param", f"splits={TINY}", "--epochs", "2", "--quiet", *SHAPES[request.param]]
    assert main(["train", "--out", str(run), *args]) == 0
    assert main(["explore", str(run), "--out", str(root / "explore")]) == 0
    return run, root / "explore"


def page_data(page) -> dict:
    found = re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>',
                      page.read_text(), re.S)  # fmt: skip
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_the_page_holds_every_head_with_the_numbers_of_heads_csv(explored):
    from headcoop.loading.checkpoint import load_with_task

    run, out = explored
    data, heads = page_data(out / "explorer.html"), pd.read_csv(out / "heads.csv")
    model, _, _ = load_with_task(run)
    assert data["table"]["name"] == heads["name"].tolist()
    assert len(data["heads"]) == model.cfg.n_layers * model.cfg.n_heads == len(heads)
    for column in ("s_acc", "l_acc", "l_acc_direct", "roc_auc", "head_weight"):
        assert data["table"][column] == pytest.approx(heads[column].tolist(), abs=1e-12)
    last = len(heads) - 1  # the last layer's last head: its QK table from the weights
    layer, head = divmod(last, model.cfg.n_heads)
    drawn = torch.tensor(data["heads"][last]["qk"]["scores"])
    assert torch.allclose(drawn, torch.tensor(qk_circuit(model, layer, head)["scores"]), 1e-4)
    assert len(data["heads"][0]["margins"]) == len(data["classes"])
    assert data["dynamics"]["epochs"] == [1, 2]  # the run's saved epochs
    assert len(data["pairs"]["s_acc"]) == len(heads) * (len(heads) - 1) // 2


def test_a_head_s_margin_is_its_head_only_logit_difference(explored):
    """The margins of a two-class task: the head-only logit of the true candidate minus the
    other, from the direct path through W_O and the unembedding at the frozen final scale."""
    from headcoop.engine.cache import collect
    from headcoop.explore.head_data import sample
    from headcoop.loading.checkpoint import load_with_task
    from headcoop.metrics.attribution import decompose

    run, out = explored
    model, task, _ = load_with_task(run)
    cache = collect(model, task, sample(task.split("test")))
    parts = decompose(model, cache)
    ids = torch.tensor([task.vocab.index(t) for t in task.readouts[task.decision].candidates])
    singles = torch.eye(model.cfg.n_layers * model.cfg.n_heads, dtype=torch.bool)
    logits = parts.head_only(singles, task.decision, ids)  # [head example candidate]
    sign = torch.tensor(page_data(out / "explorer.html")["classes"]) * 2 - 1  # 1 if '5'
    expected = (logits[..., 1] - logits[..., 0]) * sign
    found = torch.tensor(page_data(out / "explorer.html")["heads"][0]["margins"])
    assert torch.allclose(found, expected[0], rtol=1e-3, atol=1e-5)


def test_a_rerun_reuses_the_analysis_of_the_same_weights(explored, caplog):
    run, out = explored
    with caplog.at_level("INFO", logger="headcoop.explore"):
        assert main(["explore", str(run), "--out", str(out)]) == 0
    assert any("reusing the analysis" in r.message for r in caplog.records)


def test_an_analysis_under_other_task_settings_is_not_reused(explored, caplog, tmp_path):
    """The same weights, explored on another data seed: the numbers must be of that task."""
    run, out = explored
    other = tmp_path / "other"
    for name in ("heads.csv", "pairs.csv", "summary.json", "manifest.json"):
        (other / name).parent.mkdir(exist_ok=True)
        (other / name).write_bytes((out / name).read_bytes())
    args = ["--task", "count01", "--task-param", f"splits={TINY}", "--task-param", "seed=7"]
    with caplog.at_level("INFO", logger="headcoop.explore"):
        assert main(["explore", str(run), "--out", str(other), *args]) == 0
    assert not any("reusing the analysis" in r.message for r in caplog.records)
    assert json.loads((other / "summary.json").read_text())["task_config"]["seed"] == 7


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)
def test_the_page_in_a_real_browser(explored):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, out = explored
    heads = pd.read_csv(out / "heads.csv")
    url = (out / "explorer.html").resolve().as_uri()
    driver = _driver()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        cells = driver.find_elements(By.CSS_SELECTOR, "#head-grid [data-head]")
        assert [c.get_attribute("data-head") for c in cells] == heads["name"].tolist()
        chosen = len(heads) - 1
        cells[chosen].click()
        panel = driver.find_element(By.ID, "head-panel")
        wait.until(lambda d: panel.get_attribute("data-head") == heads["name"][chosen])
        for column in ("s_acc", "l_acc", "l_acc_direct"):
            cell = panel.find_element(By.CSS_SELECTOR, f'td[data-column="{column}"]')
            assert float(cell.get_attribute("data-value")) == pytest.approx(
                heads[column][chosen], abs=1e-12
            )
        assert len(panel.find_elements(By.TAG_NAME, "svg")) >= 5  # the charts were drawn
        assert driver.current_url.endswith(f"#{heads['name'][chosen]}")
        driver.get(f"{url}#{heads['name'][0]}")  # a link to a head selects it
        wait.until(lambda d: panel.get_attribute("data-head") == heads["name"][0])
        _assert_nothing_left_the_page(driver)
    finally:
        driver.quit()


def _assert_nothing_left_the_page(driver) -> None:
    """Every request the page made was for a local file, and no script error was logged."""
    requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] ==
            "Network.requestWillBeSent"]  # fmt: skip
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_serve_prints_the_address_and_serves_the_page(explored):
    """--serve: one line with the address on 127.0.0.1, and the page behind it."""
    import subprocess
    import sys
    import urllib.request

    run, out = explored
    command = [sys.executable, "-m", "headcoop.cli", "explore", str(run), "--out", str(out)]
    server = subprocess.Popen(
        [*command, "--serve"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        lines = [server.stdout.readline() for _ in range(2)]
        (address,) = re.findall(r"http://127\.0\.0\.1:\d+/explorer\.html", lines[-1])
        with urllib.request.urlopen(address, timeout=10) as response:
            assert response.status == 200 and b'id="explorer-data"' in response.read()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_plain_transformer_lens_checkpoint_explores(tmp_path):
    """A two-layer checkpoint written by plain TransformerLens code (top-level config fields,
    safetensors) and naming no task: explored with --task, one head entry per head."""
    from .test_any_model import INDUCTION, TWO_LAYERS, _write_plain

    _write_plain(tmp_path / "ck", TWO_LAYERS, "model.safetensors")
    params = [f"--task-param={k}={v}" for k, v in (("tokens", 10), ("half", 5), ("size", 200))]
    out = tmp_path / "explore"
    assert main(["explore", str(tmp_path / "ck"), "--out", str(out), "--task", "induction",
                 *params]) == 0  # fmt: skip
    data, heads = page_data(out / "explorer.html"), pd.read_csv(out / "heads.csv")
    names = [f"L{layer}H{h}" for layer in range(2) for h in range(4)]
    assert [h["name"] for h in data["heads"]] == names == heads["name"].tolist()
    assert data["vocab"] == list(INDUCTION.vocab)
