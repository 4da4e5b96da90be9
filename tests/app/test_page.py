"""The page of `realfake app` in a real browser (Chromium from the system packages, driven by
Selenium): a person uploads a photo with a face, one without, and a broken file, and reads the answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.browser import chromium, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def cards_done(driver, n: int):
    from selenium.webdriver.common.by import By

    cards = driver.find_elements(By.CSS_SELECTOR, "article.result")
    return len(cards) == n and all(c.get_attribute("data-state") in ("done", "error") for c in cards) and cards


def test_a_person_checks_three_photos(browser, app_url, photos, model_file, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(app_url)
    model_line = wait_for(browser, lambda d: "threshold" in d.find_element(By.ID, "model").text and
                          d.find_element(By.ID, "model"))
    assert str(model_file) in model_line.text and "threshold 0.500" in model_line.text
    note = browser.find_element(By.ID, "trained-on")  # this test model's file does not say what it learned from
    assert "does not say which data" in note.text and "warn" in note.get_attribute("class")
    chosen = [photos["face"], photos["no_face"], photos["broken"]]
    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in chosen))
    cards = {c.get_attribute("data-file"): c for c in wait_for(browser, lambda d: cards_done(d, 3))}

    face_card = cards["astronaut.png"]
    assert face_card.get_attribute("data-state") == "done"
    boxes = face_card.find_elements(By.CSS_SELECTOR, ".photo .box")
    assert len(boxes) == 1 and boxes[0].is_displayed() and boxes[0].size["width"] > 20
    (face,) = face_card.find_elements(By.CSS_SELECTOR, "li.face")
    assert "Face #0: p_fake" in face.text and ("REAL" in face.text or "FAKE" in face.text)
    assert face_card.find_element(By.CSS_SELECTOR, ".photo img").get_property("naturalWidth") > 0
    assert f"Answered by {model_file}" in face_card.text

    no_face = cards["coffee.jpg"].find_element(By.CSS_SELECTOR, ".error").text
    assert "coffee.jpg: no face found" in no_face and "faces=off" not in no_face, "no API parameter on the page"
    assert "broken.jpg: not an image file" in cards["broken.jpg"].find_element(By.CSS_SELECTOR, ".error").text
    assert not cards["broken.jpg"].find_elements(By.CSS_SELECTOR, "button.whole"), "only a photo without a face"
    cards["coffee.jpg"].find_element(By.CSS_SELECTOR, "button.whole").click()
    wait_for(browser, lambda d: cards["coffee.jpg"].get_attribute("data-state") == "done")
    (whole,) = cards["coffee.jpg"].find_elements(By.CSS_SELECTOR, "li.face")
    assert "Whole image: p_fake" in whole.text and not cards["coffee.jpg"].find_elements(By.CSS_SELECTOR, ".error")

    face_card.find_element(By.CSS_SELECTOR, "button.explain").click()
    cam = wait_for(browser, lambda d: face_card.find_elements(By.CSS_SELECTOR, ".cams img"))[0]
    wait_for(browser, lambda d: cam.get_property("naturalWidth") == 288)
    shot = Path(os.environ.get("REALFAKE_SCREENSHOT", tmp_path / "page.png"))
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("width", [1280, 390])
def test_the_box_sits_on_the_face_at_every_width_and_photo_size(browser, app_url, photos, width, tmp_path):
    """The drawn rectangle is the API's box scaled to the image as displayed (within 3 px), on a wide window and a
    phone's, for the 512-pixel astronaut and the same photo at 2,000 pixels."""
    import requests
    from PIL import Image
    from selenium.webdriver.common.by import By

    big = tmp_path / "astronaut-2000.jpg"  # under the test app's 2 MiB upload limit
    Image.open(photos["face"]).convert("RGB").resize((2000, 2000), Image.LANCZOS).save(big, quality=85)
    browser.set_window_size(width, 1000)
    try:
        for photo in (photos["face"], big):
            r = requests.post(f"{app_url}/api/predict", files={"file": (photo.name, photo.read_bytes())}, timeout=120)
            assert r.status_code == 200, r.text
            answer = r.json()
            (face,) = answer["faces"]
            browser.get(app_url)
            browser.find_element(By.ID, "files").send_keys(str(photo))
            (card,) = wait_for(browser, lambda d: cards_done(d, 1))
            img = card.find_element(By.CSS_SELECTOR, ".photo img")
            wait_for(browser, lambda d, img=img: img.get_property("complete") and img.size["width"] > 0)
            box = card.find_element(By.CSS_SELECTOR, ".photo .box")
            shown, drawn = img.rect, box.rect
            scale = shown["width"] / answer["width"]
            x1, y1, x2, y2 = face["box"]
            want = {"x": shown["x"] + x1 * scale, "y": shown["y"] + y1 * scale,
                    "width": (x2 - x1) * scale, "height": (y2 - y1) * scale}
            for key in want:
                assert abs(drawn[key] - want[key]) <= 3, (photo.name, width, key, drawn, want)
            assert shown["height"] / answer["height"] == pytest.approx(scale, rel=0.01)
    finally:
        browser.set_window_size(1280, 1000)


def test_the_page_loads_nothing_from_outside(browser, app_url):
    # Every script, style and image the page uses comes from the app itself.
    browser.get(app_url)
    wait_for(browser, lambda d: "threshold" in d.find_element("id", "model").text)
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(app_url) for u in urls), urls


def test_a_face_too_soft_to_judge_reads_cant_tell_with_the_reason(browser, decided_url, faces):
    """The page shows the API's verdict, "uncertain" included: a blurred face is not called REAL."""
    import requests
    from selenium.webdriver.common.by import By

    from realfake.detector.decision import TOO_SOFT

    browser.get(decided_url)
    wait_for(browser, lambda d: "threshold" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "files").send_keys("\n".join(str(faces[k]) for k in ("sharp", "blurred")))
    cards = {c.get_attribute("data-file"): c for c in wait_for(browser, lambda d: cards_done(d, 2))}
    for name in ("sharp", "blurred"):
        (face,) = cards[f"{name}.png"].find_elements(By.CSS_SELECTOR, "li.face")
        api = requests.post(f"{decided_url}/api/predict", files={"file": (name, faces[name].read_bytes())},
                            timeout=120).json()["faces"][0]
        assert face.get_attribute("data-verdict") == api["verdict"]
        shown = face.find_element(By.CSS_SELECTOR, ".verdict").text
        assert shown == ("CAN'T TELL" if api["verdict"] == "uncertain" else api["verdict"].upper())
    blurred = cards["blurred.png"].find_element(By.CSS_SELECTOR, "li.face")
    assert blurred.get_attribute("data-verdict") == "uncertain" and TOO_SOFT in blurred.text


def test_the_api_docs_render_offline(browser, app_url):
    # Swagger UI's script and style come from the app, so /docs shows the endpoint without the internet.
    browser.get(f"{app_url}/docs")
    wait_for(browser, lambda d: "/api/predict" in d.find_element("tag name", "body").text)
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(app_url) for u in urls), urls
