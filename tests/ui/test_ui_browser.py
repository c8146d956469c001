"""/ui in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium) against real processes:
uvicorn (the API) and `python -m worker.main` on a real Redis, two user keys and an admin key.

Sign in, submit through the client, watch progress reach 100 %, open the plots, download the weights, sort a
ranking; a second key sees nothing of the first; the admin sees queues and workers. Screenshots go to
runs/ui-screenshots/ for people to look at.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from svc_helpers import MLP_RECTIFY, MLP_SCORE, REPO, served

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed "
                                                                 "(make test installs them)")
SHOTS = REPO / "runs" / "ui-screenshots"


@pytest.fixture()
def stack(tmp_path: Path, redis_server, redis_conn):
    from service.deps import hash_key

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), INITSCORE_REDIS_URL=redis_server.url,
               INITSCORE_ARTIFACT_DIR=str(tmp_path / "artifacts"), INITSCORE_ALLOWED_ROOTS=str(tmp_path),
               INITSCORE_API_KEYS=f"{hash_key('k-alice')},{hash_key('k-bob')}",
               INITSCORE_ADMIN_KEYS=hash_key("k-admin"), INITSCORE_HEARTBEAT_TTL="5")
    with served(env) as url:
        yield url


@pytest.fixture()
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    drv.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield drv
    finally:
        drv.quit()


def _wait(drv, cond, timeout: float = 60.0, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.2).until(cond, message=what)


def _sign_in(drv, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    drv.get(f"{url}/ui#/")
    drv.find_element(By.ID, "key").send_keys(key)
    drv.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    _wait(drv, lambda d: "signed in" in d.find_element(By.ID, "who").text, what="signed in")


def _shot(drv, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(SHOTS / f"{name}.png"))


def test_ui_end_to_end_in_chromium(stack, browser) -> None:
    from selenium.webdriver.common.by import By

    from client import Client

    url, drv = stack, browser
    drv.get(f"{url}/ui")
    _wait(drv, lambda d: "Sign in with an API key" in d.find_element(By.ID, "main").text, what="asks for a key")
    _sign_in(drv, url, "k-alice")
    _wait(drv, lambda d: "No jobs yet" in d.find_element(By.ID, "main").text, what="empty list")

    alice = Client(url, api_key="k-alice", retries=20, backoff=0.1)
    rect = alice.submit({**MLP_RECTIFY, "options": {"iters": 60, "heldout_batches": 1}})
    score = alice.submit(MLP_SCORE)
    batch = alice.submit({"kind": "batch", "models": [{"arch": "mlp", "args": {"in_features": 48, "hidden": h,
                                                                              "num_classes": 4}} for h in (8, 16, 32)],
                          "data": MLP_SCORE["data"]})

    # the list shows the new jobs, then the rectify page follows its progress to 100 %
    drv.get(f"{url}/ui#/")
    _wait(drv, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main tbody tr")) == 3, what="three jobs listed")
    _shot(drv, "1-jobs")
    drv.get(f"{url}/ui#/jobs/{rect['id']}")
    fractions = set()

    def finished(d) -> bool:
        done = bool(d.find_elements(By.CSS_SELECTOR, f'section.job[data-job="{rect["id"]}"][data-status="finished"]'))
        pct = d.find_elements(By.CSS_SELECTOR, "section.job .bar .pct")  # read after: the page may have just rendered
        if pct:
            fractions.add(pct[0].text)
        return done

    _wait(drv, finished, timeout=120, what="rectify job finished")
    assert "100%" in fractions
    charts = drv.find_elements(By.CSS_SELECTOR, "section.job svg.chart")
    assert len(charts) >= 4  # GC, GN, g_max against gamma, scales
    assert drv.find_elements(By.XPATH, "//*[name()='text' and normalize-space()='gamma']"), "gamma line drawn"
    _shot(drv, "2-rectify")

    drv.find_element(By.CSS_SELECTOR, "button.dl").click()
    path = drv.downloads / f"{rect['id']}.safetensors"
    _wait(drv, lambda d: path.exists() and path.stat().st_size > 0, what="weights downloaded")
    time.sleep(0.3)
    final = alice.get(rect)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == final["weights_sha256"]

    # the score page: the Figure 3 pair as two bar charts
    alice.wait(score, timeout=60)
    drv.get(f"{url}/ui#/jobs/{score['id']}")
    # a hash change returns at once: wait for this job's page, not any finished page still shown
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, f'section.job[data-job="{score["id"]}"][data-status="finished"]'),
          what="score page")
    assert len(drv.find_elements(By.CSS_SELECTOR, "section.job svg.chart")) == 2
    assert drv.find_elements(By.CSS_SELECTOR, "section.job svg.chart rect")
    _shot(drv, "3-score")

    # the batch ranking sorts by a column
    alice.wait(batch, timeout=60)
    drv.get(f"{url}/ui#/jobs/{batch['id']}")
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, f'section.job[data-job="{batch["id"]}"][data-status="finished"] table.sortable'),
          what="ranking")
    head = [th for th in drv.find_elements(By.CSS_SELECTOR, "table.sortable th") if th.text == "params"][0]
    head.click()
    col = [th.text for th in drv.find_elements(By.CSS_SELECTOR, "table.sortable th")].index("params")
    values = [int(r.find_elements(By.TAG_NAME, "td")[col].text) for r in drv.find_elements(By.CSS_SELECTOR, "table.sortable tbody tr")]
    assert values == sorted(values) and len(values) == 3
    _shot(drv, "4-batch")

    # another key sees nothing of alice's
    drv.find_element(By.ID, "signout").click()
    _sign_in(drv, url, "k-bob")
    _wait(drv, lambda d: "No jobs yet" in d.find_element(By.ID, "main").text, what="bob's empty list")
    drv.get(f"{url}/ui#/jobs/{rect['id']}")
    _wait(drv, lambda d: "Not found" in d.find_element(By.ID, "main").text, what="alice's job hidden from bob")
    assert rect["id"] not in drv.page_source.split("#/jobs/")[0] or "Not found" in drv.page_source
    assert not drv.find_elements(By.ID, "admin-link") or not drv.find_element(By.ID, "admin-link").is_displayed()

    # the admin sees queues and the live worker
    drv.find_element(By.ID, "signout").click()
    _sign_in(drv, url, "k-admin")
    _wait(drv, lambda d: d.find_element(By.ID, "admin-link").is_displayed(), what="admin link")
    drv.get(f"{url}/ui#/admin")
    _wait(drv, lambda d: "Workers" in d.find_element(By.ID, "main").text, what="admin page")
    rows = drv.find_elements(By.XPATH, "//h2[.='Workers']/following-sibling::table[1]/tbody/tr")
    assert len(rows) == 1 and rows[0].find_elements(By.TAG_NAME, "td")[4].text  # a heartbeat time
    _shot(drv, "5-admin")
    alice.close()


def test_fragments_follow_the_api_rules_without_a_browser(queued) -> None:
    """Keys configured: no key -> 401, another key's job -> 404, admin page -> 403 for a user; single-user mode
    (no keys): every fragment, the admin page included, answers 200."""
    from service.deps import hash_key

    settings, backend, tc = queued(api_keys=[hash_key("a"), hash_key("b")])
    job = tc.post("/v1/jobs", json=MLP_SCORE, headers={"Authorization": "Bearer a"}).json()
    assert tc.get("/ui").status_code == 200 and "ui.js" in tc.get("/ui").text
    assert tc.get("/ui/static/ui.js").status_code == 200 and tc.get("/ui/static/nope.js").status_code == 404
    assert tc.get("/ui/fragments/jobs").status_code == 401
    a, b = {"Authorization": "Bearer a"}, {"Authorization": "Bearer b"}
    assert job["id"] in tc.get("/ui/fragments/jobs", headers=a).text
    assert job["id"] not in tc.get("/ui/fragments/jobs", headers=b).text
    assert tc.get(f"/ui/fragments/jobs/{job['id']}", headers=b).status_code == 404
    assert tc.get("/ui/fragments/admin", headers=a).status_code == 403
    _, _, open_tc = queued()
    for path in ("/ui/fragments/whoami", "/ui/fragments/jobs", "/ui/fragments/admin"):
        assert open_tc.get(path).status_code == 200, path
    assert 'data-admin="true"' in open_tc.get("/ui/fragments/whoami").text


def test_job_list_pages_with_a_cursor(queued) -> None:
    import copy
    import re

    settings, backend, tc = queued(max_list_limit=2)
    ids = []
    for seed in range(3):
        req = copy.deepcopy(MLP_SCORE)
        req["data"]["seed"] = seed
        ids.append(tc.post("/v1/jobs", json=req).json()["id"])
    first = tc.get("/ui/fragments/jobs").text
    assert first.count("#/jobs/") == 2 and ids[2] in first and ids[0] not in first  # newest first
    cursor = re.search(r'href="#/\?cursor=([0-9]+)"', first).group(1)
    older = tc.get(f"/ui/fragments/jobs?cursor={cursor}").text
    assert ids[0] in older and "older jobs" not in older
    assert tc.get("/ui/fragments/jobs?cursor=abc").status_code == 422
