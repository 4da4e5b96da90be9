"""Screenshots of what a user sees, from headless Chromium, offline, into ``docs/screens/``: the page checking
photos at desktop and phone width (boxes on the faces, the model's training data, the no-face choice) and a
whole-image Grad-CAM with its caption, the API's
offline ``/docs``, the MLflow experiment (it opens on its runs), the DVC plots page, and the validation report.

Run it in a workspace where ``make run`` has run (it starts the page and ``mlflow ui`` on free local ports and
stops them; ``make browser`` installs Chromium):

    python tools/make_demo.py && python tools/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test suite's Chromium and servers

from helpers.browser import chromium, wait_for  # noqa: E402
from helpers.servers import first_answer, free_port  # noqa: E402

OUT = Path("docs/screens")


def serving(args: list[str], url: str) -> subprocess.Popen:
    """A server started with ``args``, once ``url`` answers (its log is not kept: nothing would read the pipe)."""
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))
    try:
        first_answer(server, url, timeout=180)
    except AssertionError:
        server.terminate()
        raise
    return server


def experiment_id() -> str:
    """The id of the pipeline's MLflow experiment in the workspace's store."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri="sqlite:///mlflow.db").get_experiment_by_name("realfake").experiment_id


def page(driver, url: str, photos: list[Path]) -> None:
    """The page with ``photos`` checked, every card answered."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(driver, lambda d: "threshold" in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "files").send_keys("\n".join(str(p.resolve()) for p in photos))
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.result li.face, article.result .error"))
             >= len(photos))
    time.sleep(1)  # the images' layout settles


def explain(driver, name_part: str) -> None:
    """Show the Grad-CAM maps of the card whose file name holds ``name_part``, scrolled into view."""
    from selenium.webdriver.common.by import By

    card = next(c for c in driver.find_elements(By.CSS_SELECTOR, "article.result") if name_part in c.text)
    card.find_element(By.CSS_SELECTOR, "button.explain").click()
    wait_for(driver, lambda d: card.find_elements(By.CSS_SELECTOR, ".cams img"))
    time.sleep(1)
    driver.execute_script("arguments[0].scrollIntoView()", card)


def shoot(driver, name: str, width: int, height: int) -> None:
    """Save the window, at ``width`` x ``height``, as ``docs/screens/<name>``."""
    driver.set_window_size(width, height)
    time.sleep(1)
    driver.save_screenshot(str(OUT / name))
    print(OUT / name)


def main() -> None:
    """Every screenshot, with the page and ``mlflow ui`` started and stopped here."""
    OUT.mkdir(parents=True, exist_ok=True)
    demo = Path("demo")
    photos = [demo / "astronaut.png", *sorted(demo.glob("*-blurred.png")), demo / "coffee.jpg"]
    if not all(p.exists() for p in photos):
        raise SystemExit("demo/ is missing: run python tools/make_demo.py first")
    port, ui_port = free_port(), free_port()
    app = serving([sys.executable, "-m", "realfake.cli", "app", "--model", "models/model.pt", "--port", str(port)],
                  f"http://127.0.0.1:{port}/")
    ui = serving([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db", "--port",
                  str(ui_port), "--host", "127.0.0.1"], f"http://127.0.0.1:{ui_port}/")
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show"], check=True, capture_output=True)
    try:
        with chromium(1280, 1100) as driver:
            page(driver, f"http://127.0.0.1:{port}/", photos)
            shoot(driver, "page-desktop.png", 1280, 1600)
            shoot(driver, "page-phone.png", 390, 1800)
            explain(driver, "blurred")
            shoot(driver, "page-grad-cam.png", 1280, 1500)
            driver.get(f"http://127.0.0.1:{port}/docs")
            wait_for(driver, lambda d: "POST" in d.page_source and "/api/" in d.page_source)
            shoot(driver, "api-docs.png", 1280, 1100)
            driver.get(f"http://127.0.0.1:{ui_port}/#/experiments/{experiment_id()}?workflowType=machine_learning")
            wait_for(driver, lambda d: "Runs" in d.page_source, 180)
            time.sleep(8)  # the runs table fills in
            shoot(driver, "mlflow-experiment.png", 1400, 1000)
            driver.get((Path.cwd() / "dvc_plots" / "index.html").as_uri())
            time.sleep(8)
            shoot(driver, "dvc-plots.png", 1280, 2400)
            driver.get((Path.cwd() / "reports/validation/ge/report.html").as_uri())
            shoot(driver, "validation-report.png", 1280, 1400)
    finally:
        for server in (app, ui):
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
