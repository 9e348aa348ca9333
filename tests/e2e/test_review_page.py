"""`trapline review serve` in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium): load the page, label images with the keyboard and the mouse, decide an RDE cluster, and find every
answer in the database. Screenshots of both views are kept for people to look at (``ARTIFACTS``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.rde.search import search
from producer.review import sample
from shared import store
from shared.db import DetectionRow, Image, RdeCluster, ReviewLabel
from shared.migrations import upgrade
from shared.rde.clustering import RdeOptions
from tests.conftest import IN_CI, REPO
from tests.unit.records import add_detector, add_images, add_label

pytestmark = [pytest.mark.e2e]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("TRAPLINE_TEST_ARTIFACTS", REPO / ".cache" / "test-artifacts"))
REVIEWER = "Test Reviewer"
POLE = (0.05, 0.60, 0.04, 0.30)  # a fixed box in every frame: the repeat detection
PHOTOS = {  # google-cameratrapai's test photos: file -> (final label, detector label, an animal/person box)
    "african_elephants.jpg": ("Animal", "Animal", (0.30, 0.35, 0.40, 0.40)),
    "american_black_bear.jpg": ("Animal", "Animal", (0.35, 0.40, 0.30, 0.35)),
    "blank.jpg": ("Empty", "Empty", None),
    "blank2.jpg": ("Empty", "Empty", None),
    "human.jpg": ("Human", "Human", (0.40, 0.20, 0.20, 0.70)),
    "ocelot.jpg": ("Animal", "Animal", (0.20, 0.50, 0.30, 0.25)),
}


@pytest.fixture
def reviewed_db(camera_traps: Path, tmp_path: Path) -> tuple[str, sessionmaker[Session]]:
    """Six real photos as one camera's classified images, a review set of all six, and one RDE cluster."""
    url = f"sqlite:///{tmp_path / 'review.sqlite3'}"
    upgrade(url)
    sessions = store.make_sessionmaker(store.make_engine(url))
    with sessions.begin() as session:
        detector = add_detector(session)
        ids = add_images(session, str(camera_traps / "google-cameratrapai"), "finnmark",
                         [(name, "serengeti") for name in PHOTOS])
        session.execute(update(Image).values(camera="cam1"))
        for name, image_id in ids.items():
            final, detection, box = PHOTOS[name]
            add_label(session, image_id, detector, final, detection=detection, present=final)
            for category, conf, bbox in [(1, 0.3, POLE), *([(1 if final == "Animal" else 2, 0.92, box)] if box else [])]:
                session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=category,
                                         conf=conf, x=bbox[0], y=bbox[1], w=bbox[2], h=bbox[3]))
        session.flush()
        sample(session, detector.id, 1.0, True, 0)
        search(session, detector.id, RdeOptions(occurrences=5))
    return url, sessions


@contextlib.contextmanager
def serving(url: str, cwd: Path) -> Iterator[str]:
    """`trapline review serve --port 0` on the database at ``url``, as a user starts it; the page's address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "review", "serve", "--port", "0", "--reviewer", REVIEWER],
        env={**os.environ, "TRAPLINE_DATABASE_URL": url}, cwd=cwd, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert " at http://127.0.0.1:" in line, line
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def review_server(reviewed_db: tuple[str, sessionmaker[Session]], tmp_path: Path) -> Iterator[str]:
    with serving(reviewed_db[0], tmp_path) as address:
        yield address


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if IN_CI:
            pytest.fail("Debian's chromium and chromium-driver are required in CI (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def labels_in(sessions: sessionmaker[Session]) -> dict[str, tuple[str, str, str]]:
    with sessions() as session:
        rows = session.execute(select(Image.rel_path, ReviewLabel.label, ReviewLabel.reviewer, ReviewLabel.source)
                               .join(Image, Image.id == ReviewLabel.image_id))
        return {path: (label, reviewer, source) for path, label, reviewer, source in rows}


def test_review_page_in_a_real_browser(browser, review_server: str,
                                       reviewed_db: tuple[str, sessionmaker[Session]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _, sessions = reviewed_db
    wait = WebDriverWait(browser, 30)

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    def image_shown() -> bool:
        return browser.execute_script("const i = document.getElementById('image');"
                                      "return i.complete && i.naturalWidth > 0;")

    # Given the page, opened as a reviewer does
    browser.get(review_server)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    wait.until(lambda b: image_shown())
    assert text("position") == "1 / 6" and text("path") == "african_elephants.jpg"
    assert text("final-label") == "Animal" and browser.find_element(By.ID, "reviewer").get_attribute("value") == REVIEWER
    assert len(browser.find_elements(By.CSS_SELECTOR, "#image-frame .box")) == 2  # the elephants and the pole
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "review-page.png"))

    # When three images are labelled with the keyboard: 1 (Animal), E (Empty: a person says the bear is not
    # there), Enter (accept the model's Empty)
    body = browser.find_element(By.TAG_NAME, "body")
    for key, after in (("1", "2 / 6"), ("e", "3 / 6"), (Keys.ENTER, "4 / 6")):
        body.send_keys(key)
        wait.until(lambda b, after=after: text("position") == after)
    # and one with the mouse, after going back one image with the arrow key
    body.send_keys(Keys.ARROW_LEFT)
    wait.until(lambda b: text("position") == "3 / 6")
    browser.find_element(By.CSS_SELECTOR, "#label-buttons button[data-label='Bad']").click()
    wait.until(lambda b: text("position") == "4 / 6")

    # Then each label is in the database at once, with the reviewer's name and the page as its source
    wait.until(lambda b: len(labels_in(sessions)) == 3)
    assert labels_in(sessions) == {
        "african_elephants.jpg": ("Animal", REVIEWER, "web"),
        "american_black_bear.jpg": ("Empty", REVIEWER, "web"),
        "blank.jpg": ("Bad", REVIEWER, "web"),  # Enter gave Empty; the mouse changed it to Bad
    }
    assert "3 / 6" in text("progress")

    # When the repeat detections are reviewed on the same page and the cluster confirmed with C
    browser.find_element(By.ID, "tab-clusters").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#strip img")) == 6)
    wait.until(lambda b: b.execute_script(
        "return [...document.querySelectorAll('#strip img')].every((i) => i.complete && i.naturalWidth > 0);"))
    assert text("cluster-camera") == "serengeti/cam1" and text("cluster-images") == "6"
    assert text("cluster-category") == "animal" and text("cluster-instances") == "6"
    browser.save_screenshot(str(ARTIFACTS / "review-page-rde.png"))
    body.send_keys("c")
    wait.until(lambda b: "confirmed" in text("cluster-status-line"))

    # Then its detections are suppressed (kept, never counted) and its images wait to be labelled again
    with sessions() as session:
        (cluster,) = session.scalars(select(RdeCluster)).all()
        assert (cluster.status, cluster.decided_by) == ("confirmed", REVIEWER)
        poles = session.scalars(select(DetectionRow.suppressed).where(DetectionRow.conf == 0.3)).all()
        assert len(poles) == 6 and all(poles)
    assert (ARTIFACTS / "review-page.png").stat().st_size > 10_000


ARCTIC = "hannaboe-camera_trap_workflow/vj_ga_hu_2"
BURST_FRAMES = ("IMG_0018.JPG", "IMG_0019.JPG", "IMG_0020.JPG", "IMG_0023.JPG")  # time-lapse, a burst of 2, time-lapse


@pytest.fixture
def events_server(camera_traps: Path, tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """Four real RECONYX frames (a time-lapse frame, a motion burst of two, a time-lapse frame) with what the
    detect worker reads from them, a review set of three (the burst's second frame not drawn), and their events;
    `trapline review serve` on them."""
    from worker.ml.images import decode

    url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    upgrade(url)
    sessions = store.make_sessionmaker(store.make_engine(url))
    folder = camera_traps / ARCTIC
    with sessions.begin() as session:
        detector = add_detector(session)
        ids = add_images(session, str(folder), None, [(name, "vj_ga_hu_2") for name in BURST_FRAMES])
        for name, image_id in ids.items():
            m = decode((folder / name).read_bytes()).metadata
            session.execute(update(Image).where(Image.id == image_id).values(
                camera="cam", taken_at=m.taken_at, trigger=m.trigger, sequence=m.sequence, event_number=m.event_number))
            if name != "IMG_0020.JPG":
                add_label(session, image_id, detector, "Empty")
        session.flush()
        sample(session, detector.id, 1.0, True, 0)
        store.events.make_events(session, [session.get(Image, ids["IMG_0018.JPG"]).archive_id],
                                 timedelta(minutes=30))
    with serving(url, tmp_path) as address:
        yield address, sessions


def test_a_whole_event_is_labelled_at_once(browser, events_server: tuple[str, sessionmaker[Session]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, sessions = events_server
    wait = WebDriverWait(browser, 30)

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    def strip_shown(count: int) -> bool:
        return browser.execute_script(
            "const s = [...document.querySelectorAll('#event-strip img')];"
            f"return s.length === {count} && s.every((i) => i.complete && i.naturalWidth > 0);")

    # Given the page at the burst's drawn frame, with the burst's two frames in the strip (one not drawn)
    browser.get(url)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    body = browser.find_element(By.TAG_NAME, "body")
    assert text("position") == "1 / 3" and text("event") == "time-lapse, 1 frame"
    body.send_keys("j")
    wait.until(lambda b: text("position") == "2 / 3" and text("path") == "IMG_0019.JPG")
    wait.until(lambda b: strip_shown(2))
    assert text("event") == "burst, 2 frames"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "review-page-event.png"))

    # When the whole event is labelled Animal with G then 1
    body.send_keys("g")
    body.send_keys("1")
    wait.until(lambda b: text("position") == "3 / 3")

    # Then both frames carry the label, the undrawn one too, and nothing else was labelled
    wait.until(lambda b: len(labels_in(sessions)) == 2)
    event_id = labels_in(sessions)["IMG_0019.JPG"][2].removeprefix("web event ")
    assert labels_in(sessions) == {name: ("Animal", REVIEWER, f"web event {event_id}")
                                   for name in ("IMG_0019.JPG", "IMG_0020.JPG")}
    assert "1 / 3" in text("progress")
