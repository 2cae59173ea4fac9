"""attnviz.Viewer in a real browser, once: JupyterLab serves a notebook that creates a viewer of
tests/data/minilm_attn_128.npy, headless Chromium (Debian's chromium and chromium-driver, which
./test installs; nothing is downloaded here) runs it through selenium, clicks a head and turns
the wheel on it, and the screenshots show the grid, then the focused, zoomed head, in viridis's
colours, with the readout in the widget's title bar changing.

Slow (a JupyterLab server and a browser start): tens of seconds. With ATTNVIZ_WRITE_DOCS=1 it
also writes the README's screenshot, docs/notebook-widget.png (the page after the click); the
widget's own screenshots of each step stay in the test's tmp_path."""

import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from conftest import ROOT

DATA = ROOT / "tests" / "data" / "minilm_attn_128.npy"
SIZE = (720, 480)
NOTEBOOK_SOURCE = """import attnviz
viewer = attnviz.Viewer("{}", size={})
viewer""".format(DATA.name, SIZE)


def viridis():
    with open(ROOT / "tests" / "data" / "matplotlib-colormaps.json") as f:
        return np.array(json.load(f)["colormaps"]["viridis"], np.int16)


def viridis_fraction(rgb, table):
    """The fraction of pixels whose colour is one of the table's (within 2 per channel: the
    browser decodes the PNG frame exactly, this only allows for a colour-managed screen)."""
    px = rgb.reshape(-1, 1, 3).astype(np.int16)
    near = np.zeros(len(px), bool)
    for chunk in range(0, len(px), 4096):
        d = np.abs(px[chunk:chunk + 4096] - table[None]).max(axis=2)
        near[chunk:chunk + 4096] = (d <= 2).any(axis=1)
    return near.mean()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab(tmp_path):
    """A JupyterLab server on a folder holding the notebook; yields (url of the notebook,
    server log path). Its configuration and runtime files stay in tmp_path."""
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "viewer", "metadata": {},
                   "outputs": [], "source": NOTEBOOK_SOURCE}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (tmp_path / "viewer.ipynb").write_text(json.dumps(notebook))
    shutil.copy(DATA, tmp_path / DATA.name)
    # No news notification over the widget.
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    log = tmp_path / "lab.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         "--port={}".format(port), "--IdentityProvider.token={}".format(token),
         "--ServerApp.root_dir={}".format(tmp_path), "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--ServerApp.open_browser=False",
         "--allow-root"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    base = "http://127.0.0.1:{}".format(port)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen("{}/api/status?token={}".format(base, token), timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + log.read_text()[-3000:])
                time.sleep(0.5)
        yield "{}/lab/tree/viewer.ipynb?token={}".format(base, token), log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are missing: apt-get install -y chromium "
                    "chromium-driver (./test installs them)")
    # Selenium Manager must not look for (or download) a browser or a driver.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-background-networking"]:
        options.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield b
    finally:
        b.quit()


def wait_for(what, condition, timeout=120, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail("timed out waiting for {}{}".format(
        what, "\n" + log.read_text()[-3000:] if log else ""))


def still_image(b, element):
    """The element's pixels (RGB) once they stop changing (the widget sends a lossless frame
    0.3 s after the last lossy one)."""
    from PIL import Image

    last = None
    for _ in range(60):
        time.sleep(0.5)
        now = element.screenshot_as_png
        if now == last:
            return np.asarray(Image.open(io.BytesIO(now)).convert("RGB"))
        last = now
    pytest.fail("the widget's image never settled")


def title(b):
    return b.execute_script(
        "const t = document.querySelector('.renderview-top span'); return t && t.innerText")


def test_the_widget_in_jupyterlab_shows_the_grid_then_the_focused_zoomed_head(lab, browser,
                                                                              tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By

    url, log = lab
    b = browser
    b.get(url)
    wait_for("JupyterLab", lambda: b.execute_script(
        "return !!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))"),
        log=log)
    time.sleep(1)
    b.execute_script("window.jupyterapp.commands.execute('application:toggle-left-area')")
    b.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    img = wait_for("the widget's first frame", lambda: next(iter(
        e for e in b.find_elements(By.CSS_SELECTOR, "img.renderview-view")
        if (e.get_attribute("src") or "").startswith("blob:")), None), log=log)
    b.execute_script("arguments[0].scrollIntoView({block: 'end'})", img)
    table = viridis()

    grid = still_image(b, img)
    grid_fraction = viridis_fraction(grid, table)
    assert grid_fraction > 0.25, "the grid shows {:.0%} viridis pixels".format(grid_fraction)
    before = title(b)

    # A click on the head under the image's centre focuses it.
    ActionChains(b).move_to_element(img).click().perform()
    focused = still_image(b, img)
    assert not np.array_equal(focused, grid), "the click changed nothing"
    clicked = title(b)
    assert clicked and clicked.startswith("l = ") and clicked != before, (before, clicked)
    if os.environ.get("ATTNVIZ_WRITE_DOCS") == "1":
        b.save_screenshot(str(ROOT / "docs" / "notebook-widget.png"))

    # Three wheel notches up zoom about the pointer (the entry under it stays there).
    ActionChains(b).scroll_from_origin(ScrollOrigin.from_element(img), 0, -300).perform()
    zoomed = still_image(b, img)
    zoomed_fraction = viridis_fraction(zoomed, table)
    assert zoomed_fraction > 0.8, "the focused head shows {:.0%} viridis pixels".format(
        zoomed_fraction)
    assert not np.array_equal(zoomed, focused), "the wheel changed nothing"
    # The pointer moves on: the readout names another entry of the same head.
    ActionChains(b).move_by_offset(60, 20).perform()
    wait_for("the readout to follow the pointer", lambda: title(b) != clicked)
    after = title(b)
    head = re.compile(r"l = \d+ h = \d+")
    assert head.match(after) and head.match(after)[0] == head.match(clicked)[0], (clicked, after)
    pointed = still_image(b, img)

    from PIL import Image

    for name, pixels in [("grid", grid), ("focused", focused), ("zoomed", zoomed),
                         ("pointed", pointed)]:
        Image.fromarray(pixels).save(tmp_path / "{}.png".format(name))
