"""The Recsys console in a real Airflow UI, driven by Debian's headless Chromium.

One embedded deployment is seeded by the real pipeline: a first nightly run is published on
the log up to a cut-off (20% of users held out on the popularity list), a second one, on the
whole log, scores those lists against the events since, and is rejected by the gate (kept for
inspection, so the registry holds two versions).
Then `airflow api-server` serves Airflow's UI with the plugins folder and the simple auth
manager (an admin and a viewer); people log in through Airflow's own login page, open the
console from the UI's navigation, and the browser's console must stay free of errors.
Screenshots of each view go to docs/screenshots/.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from helpers import headless_chromium, stop_process_group
from recsys_tasks import db as results_db
from recsys_tasks.config import config_from_env
from recsys_tasks.data.sources import read_interactions, write_interactions
from recsys_tasks.storage import registry
from recsys_tasks.storage.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[2]
# the README's screenshots are refreshed with RECSYS_SCREENSHOTS=docs/screenshots; a plain run
# keeps its pictures out of the checkout
SHOTS = Path(os.environ.get("RECSYS_SCREENSHOTS") or tempfile.mkdtemp(prefix="recsys-shots-")).resolve()
BIN = Path(sys.executable).parent
TINY = ["--param", "pretrain_epochs=1", "--param", "num_shards=2", "--param", "holdout_fraction=0.2"]
SCRIPT_TITLE = "<script>window.__pwned = 1</script><b>x</b> "
USERS = {"admin": "admin", "viewer": "viewer"}
PROXY_ORIGIN = "https://recsys.example.test"
# Airflow's own login page asks for the UI config before anyone is logged in, and logs the 401
LOGIN_PAGE_401 = "/ui/config - Failed to load resource: the server responded with a status of 401"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "RECSYS_"))}
    env.update(
        RECSYS_HOME=str(home), RECSYS_TASK_RETRIES="0", AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__AUTH_MANAGER=(
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u}:{r}" for u, r in USERS.items()),
        RECSYS_CONSOLE_ORIGINS=PROXY_ORIGIN,  # the console as a reverse proxy would publish it
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )
    return env


def _recsys(env: dict[str, str], *args: str, expect: int = 0) -> str:
    done = subprocess.run([str(BIN / "recsys"), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == expect, (
        f"recsys {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two real nightly runs, then Airflow's API server with the console plugin on a free port."""
    home = tmp_path_factory.mktemp("console")
    env = _environment(home)
    source, whole = f"sqlite:///{home}/recsys.db?table=interactions", f"sqlite:///{home}/whole.db?table=interactions"
    catalogue = home / "items.csv"
    _recsys(env, "demo-data", "--users", "300", "--items", "120", "--out", whole, "--catalogue", str(catalogue))
    # every title holds markup and a script: the console must show it as text and run nothing
    items = pd.read_csv(catalogue, dtype=str)
    items["title"] = SCRIPT_TITLE + items["title"]
    items.to_csv(catalogue, index=False)
    env["RECSYS_ITEMS_URI"] = str(catalogue)
    log = read_interactions(whole)
    write_interactions(log[log["ts"] <= log["ts"].quantile(0.85)], source)  # the log as of the first night
    _recsys(env, "run", *TINY, "--param", "epochs=1", "--param", "gate_min_lift=-0.9")  # published: production v1
    write_interactions(log, source)  # the next day's events landed
    port = _free_port()
    log = open(home / "api-server.log", "w")  # closed below, after the server
    server = subprocess.Popen(
        [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        # rejected: no candidate clears an 11x lift over the strongest baseline; it stays in the registry
        _recsys(env, "run", *TINY, "--param", "epochs=2", "--param", "gate_min_lift=10", expect=3)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or too busy starting to answer
                pass
            assert time.time() < deadline, "api-server did not come up:\n" + (home / "api-server.log").read_text()[-3000:]
            time.sleep(0.5)
        passwords = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        with pytest.MonkeyPatch.context() as env_now:  # the deployment's config, for the assertions
            env_now.setenv("RECSYS_HOME", str(home))
            config = config_from_env({})
        yield {"base": base, "home": home, "passwords": passwords, "config": config}
    finally:
        stop_process_group(server, grace=20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium()
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    )
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def errors(driver: WebDriver, allowed: tuple[str, ...] = ()) -> list[str]:
    """Console errors since the last call, less the ones named in `allowed`."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def wait_for(driver: WebDriver, css: str, timeout: float = 30):
    return WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))[0]


def wait_text(driver: WebDriver, css: str, predicate, timeout: float = 20) -> str:
    """The text of `css` once `predicate` holds for it. A form post replaces the page, so an element
    found on the old page can go stale before its text is read: such reads are tried again."""
    def ready(d):
        text = d.find_element(By.CSS_SELECTOR, css).text
        return text if predicate(text) else False

    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        ready
    )


def login(driver: WebDriver, site: dict, user: str) -> None:
    """Through Airflow's own login page, onto the UI's home page."""
    driver.delete_all_cookies()
    driver.get(site["base"] + "/")
    wait_for(driver, "input[name=username]").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(site["passwords"][user])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: "/auth/login" not in d.current_url)
    assert errors(driver, (LOGIN_PAGE_401,)) == []


def open_console(driver: WebDriver) -> None:
    """Click the console's entry in the UI's navigation and step into its frame."""
    wait_for(driver, "a[href$='/plugin/recsys']").click()
    driver.switch_to.frame(wait_for(driver, "iframe[src$='recsys/']"))
    wait_for(driver, "header nav")


def tab(driver: WebDriver, name: str) -> None:
    driver.find_element(By.LINK_TEXT, name).click()
    wait_text(driver, "nav a.on", lambda text: text == name)


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole UI (navigation and console), as a small 256-colour PNG."""
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=256).save(SHOTS / f"{name}.png", optimize=True)


def production(site: dict) -> str | None:
    return registry.production_version(ArtifactStore(site["config"].artifact_root))


def current_model_version(site: dict) -> str | None:
    """The model version behind what readers of recommendations_current get, read as a reader would."""
    engine = results_db.make_engine(site["config"].db_url)
    try:
        with engine.connect() as conn:
            view = results_db.Tables.from_config(site["config"]).view
            return conn.exec_driver_sql(f"SELECT MIN(model_version) FROM {view} WHERE variant = 'model'").scalar()
    finally:
        engine.dispose()


def cells(driver: WebDriver, css: str) -> list[list[str]]:
    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in driver.find_elements(By.CSS_SELECTOR, css)]


def test_admin_reads_runs_quality_models_and_a_users_list_from_the_airflow_navigation(site, browser):
    login(browser, site, "admin")
    open_console(browser)
    assert browser.find_element(By.ID, "who").text == "admin · admin"
    rows = cells(browser, "#runs tbody tr")
    assert [r[1] for r in rows] == ["rejected", "published"]  # newest first
    engine = results_db.make_engine(site["config"].db_url)
    tables = results_db.Tables.from_config(site["config"])
    live = results_db.get_run(engine, tables, results_db.current_run_id(engine, tables))
    assert "live" in rows[1][0] and rows[1][5] == f"{live['rows_written']:,}" and live["rows_written"] > 2500
    assert "required lift +1000%" in rows[0][7] and "production v-" in rows[0][7]
    screenshot(browser, "runs")

    browser.find_element(By.CSS_SELECTOR, "#runs tbody tr:first-child td a").click()
    assert wait_for(browser, "#gate-verdict").text == "rejected"
    reasons = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#gate-reasons li")]
    assert len(reasons) == 3 and reasons[0].startswith("NDCG@10") and "floor" in reasons[0]
    assert "production" in reasons[1] and reasons[2].startswith("churn@10")
    assert "% of top-10 replaced" in browser.find_element(By.ID, "churn").text
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#metrics thead th")]
    assert header[:3] == ["metric", "candidate", "production"] and "popularity" in header
    metrics = {r[0]: r[1:] for r in cells(browser, "#metrics tbody tr")}
    rejected = results_db.recent_runs(engine, tables)[0]
    assert metrics["NDCG@10"][0] == f"{rejected['metrics']['model']['NDCG@10']:.4f}"
    stages = [r[0] for r in cells(browser, "#timings tr")]
    assert {"extract", "validate", "finetune", "evaluate", "gate"} <= set(stages)
    docs = browser.find_element(By.ID, "data-docs").get_attribute("href")
    cookie = {"_token": browser.get_cookie("_token")["value"]}
    response = requests.get(docs, cookies=cookie, timeout=10)  # GX's page pulls CDN assets: fetched, not rendered
    assert response.ok and "Great Expectations" in response.text
    screenshot(browser, "run")

    tab(browser, "Quality")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#quality-chart svg polyline")) >= 3
    assert len(cells(browser, "#quality tbody tr")) == 2
    outcomes = {(r[3], r[4]): r for r in cells(browser, "#outcomes tbody tr")}  # (strategy, variant)
    assert {("all", "model"), ("all", "control"), ("all", "all"), ("popularity", "control")} <= set(outcomes)
    assert outcomes[("all", "model")][12].count("%") == 3  # the uplift and its interval
    assert len(browser.find_elements(By.CSS_SELECTOR, "#outcomes-chart svg circle")) == 2  # model and control, one run
    screenshot(browser, "quality")

    tab(browser, "Models")
    assert browser.find_element(By.ID, "production-version").text == production(site)
    # each night's candidate and its refit (the shipped version)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")) == 4
    screenshot(browser, "models")

    tab(browser, "Look-up")
    user = browser.find_element(By.CSS_SELECTOR, "#user-form .sub a").text
    browser.find_element(By.CSS_SELECTOR, "#user-form .sub a").click()
    shown = cells(browser, "#user-list tbody tr")
    published = results_db.read_current(engine, tables, user)
    engine.dispose()
    assert [r[:2] for r in shown] == [[str(r.rank), r.item_id] for r in published.itertuples()]
    assert {r[6] for r in shown} <= {"model", "popularity"} and {r[7] for r in shown} <= {"model", "control"}
    # names beside ids, a reason beside each row; catalogue text shown as text, its script never run
    assert all(r[2].startswith(SCRIPT_TITLE) for r in shown)
    assert any(r[5].startswith("history: because of " + SCRIPT_TITLE) for r in shown)
    assert browser.execute_script("return window.__pwned === undefined") is True
    history = cells(browser, "#user-history tbody tr")
    assert history and [h[0] for h in history] == sorted((h[0] for h in history), reverse=True)  # newest first
    screenshot(browser, "lookup")
    item = browser.find_element(By.CSS_SELECTOR, "#user-list tbody tr:first-child td:nth-child(2) a").text
    browser.find_element(By.CSS_SELECTOR, "#user-list tbody tr:first-child td:nth-child(2) a").click()
    wait_text(browser, "h2:last-of-type", lambda text: item in text)
    similar = [r[1] for r in cells(browser, "#similar tbody tr")]
    assert len(similar) == 10 and item not in similar  # published with the lists (similar_items_current)
    screenshot(browser, "similar")
    field = browser.find_element(By.CSS_SELECTOR, "#user-form input[name=user_id]")
    field.clear()
    field.send_keys("someone-new")  # no list of their own: the run's fallback list
    browser.find_element(By.CSS_SELECTOR, "#user-form button").click()
    assert "trending" in wait_for(browser, "#fallback-note").text and len(cells(browser, "#user-list tbody tr")) == 10

    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(r.startswith(site["base"]) for r in resources), resources  # no CDN
    browser.switch_to.default_content()
    assert errors(browser) == []


def test_a_viewer_reads_the_registry_but_may_not_promote(site, browser):
    login(browser, site, "viewer")
    open_console(browser)
    tab(browser, "Models")
    assert browser.find_element(By.ID, "read-only").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "form.change") == []
    before = production(site)
    candidate = browser.find_element(By.CSS_SELECTOR, "#versions tbody tr:not(.prod)").get_attribute("data-version")
    # the form the admin gets, sent with the viewer's session from the console's own page
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const body = new URLSearchParams({version: arguments[0], confirm: 'yes'});"
        "fetch(document.querySelector('header nav a').href + 'models/promote', {method: 'POST', body})"
        ".then(r => done(r.status));",
        candidate,
    )
    assert status == 403
    assert production(site) == before
    browser.switch_to.default_content()
    assert errors(browser, ("models/promote - Failed to load resource: the server responded with a status of 403",)) == []


def test_an_admin_promotes_a_rejected_version_only_after_a_second_confirmation_and_rolls_back(site, browser):
    login(browser, site, "admin")
    open_console(browser)
    tab(browser, "Models")
    published = production(site)
    row = browser.find_element(By.CSS_SELECTOR, "#versions tbody tr:not(.prod)")
    candidate = row.get_attribute("data-version")
    reasons = row.find_element(By.CSS_SELECTOR, ".rejected-by-gate").text
    assert "rejected by the gate" in reasons and "floor" in reasons  # the second run's candidate, and why

    row.find_element(By.CSS_SELECTOR, "button").click()  # not confirmed: the browser refuses to send it
    assert production(site) == published
    cookie = {"_token": browser.get_cookie("_token")["value"]}

    def post(data, **headers):
        return requests.post(f"{site['base']}/recsys/models/promote", data=data, cookies=cookie,
                             headers={"Origin": site["base"], **headers}, timeout=10, allow_redirects=False)

    assert post({"version": candidate}).status_code == 400 and production(site) == published  # nor does the server
    once = post({"version": candidate, "confirm": "yes"})  # confirmed once: the gate's rejection needs a second
    assert once.status_code == 400 and "the gate rejected" in once.text and "floor" in once.text
    assert production(site) == published

    row = browser.find_element(By.CSS_SELECTOR, "#versions tbody tr:not(.prod)")
    row.find_element(By.CSS_SELECTOR, "input[name=confirm]").click()
    row.find_element(By.CSS_SELECTOR, "input[name=over_gate]").click()
    row.find_element(By.CSS_SELECTOR, "button").click()
    wait_text(browser, "#notice", lambda text: candidate in text and "over the gate's rejection" in text)
    assert browser.find_element(By.ID, "production-version").text == candidate == production(site)
    # the registry changed, the readers' lists did not: the page says so, and what they see
    readers = browser.find_element(By.ID, "readers-see").text
    assert published in readers and "not production's" in readers
    assert "until recsys_regenerate runs" in browser.find_element(By.ID, "readers-note").text
    assert current_model_version(site) == published

    form = browser.find_element(By.ID, "rollback-form")
    form.find_element(By.CSS_SELECTOR, "input[name=confirm]").click()
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait_text(browser, "#notice", lambda text: "rolled back" in text.lower() or published in text)
    assert browser.find_element(By.ID, "production-version").text == published == production(site)
    browser.switch_to.default_content()
    assert errors(browser) == []


def test_notices_come_from_the_server_not_the_query_string(site, browser):
    login(browser, site, "admin")
    browser.get(f"{site['base']}/recsys/models?notice=Everything+is+fine&changed=nonsense")
    assert browser.find_elements(By.ID, "notice") == []
    assert "Everything is fine" not in browser.page_source


def test_changes_from_a_forged_origin_are_refused_and_a_proxied_origin_is_accepted(site, browser):
    login(browser, site, "admin")
    cookie = {"_token": browser.get_cookie("_token")["value"]}
    published = production(site)
    port = site["base"].rsplit(":", 1)[1]

    def post(**headers):
        return requests.post(f"{site['base']}/recsys/models/promote", data={"version": published, "confirm": "yes"},
                             cookies=cookie, headers=headers, timeout=10, allow_redirects=False)

    # DNS-rebinding shape: a page on evil.test (resolving here) names itself in both Host and Origin
    forged = post(Host=f"evil.test:{port}", Origin=f"http://evil.test:{port}")
    assert forged.status_code == 403 and "evil.test" not in forged.headers.get("location", "")
    assert post(Origin="http://127.0.0.1:1").status_code == 403  # another port is another origin
    # behind a reverse proxy: Host is the backend's, the browser names the public origin
    proxied = post(Host=f"127.0.0.1:{port}", Origin=PROXY_ORIGIN, **{"X-Forwarded-Host": "recsys.example.test",
                                                                     "X-Forwarded-Proto": "https"})
    assert proxied.status_code == 303 and production(site) == published


def test_a_page_of_another_origin_cannot_frame_the_console(site, browser, tmp_path):
    login(browser, site, "admin")
    headers = requests.get(f"{site['base']}/recsys/models", cookies={"_token": browser.get_cookie("_token")["value"]},
                           timeout=10).headers
    assert headers["X-Frame-Options"] == "SAMEORIGIN" and "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    (tmp_path / "frame.html").write_text(f'<iframe id="f" src="{site["base"]}/recsys/models" width="900" height="600"></iframe>')
    port = _free_port()
    other = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/frame.html", timeout=2)
                break
            except requests.RequestException:
                assert time.time() < deadline, "the framing page's server did not start"
                time.sleep(0.2)
        browser.get(f"http://127.0.0.1:{port}/frame.html")
        time.sleep(2)
        browser.switch_to.frame(browser.find_element(By.ID, "f"))
        assert browser.find_elements(By.ID, "versions") == [] and browser.find_elements(By.CSS_SELECTOR, "form") == []
        browser.switch_to.default_content()
        # what the browser logged is the refusal itself (and the missing favicon of the framing page)
        logged = errors(browser, ("frame-ancestors", "favicon.ico"))
        assert logged == [], logged
    finally:
        stop_process_group(other, grace=5)


def test_a_runs_data_docs_load_nothing_from_outside(site, browser):
    """GX's Data Docs of a real run, as the console serves them: no CDN, no script, no outbound URL."""
    import re

    login(browser, site, "admin")
    store = ArtifactStore(site["config"].artifact_root)
    keys = sorted({key.split("/")[1] for key in store.list("runs") if key.endswith("data_docs/index.html")})
    assert keys, "no run kept its Data Docs"
    cookie = {"_token": browser.get_cookie("_token")["value"]}
    page = requests.get(f"{site['base']}/recsys/runs/{keys[0]}/data_docs/index.html", cookies=cookie, timeout=10)
    assert page.status_code == 200 and "<table" in page.text
    assert re.findall(r"(?:src|href|action)=[\"'](?:https?:)?//", page.text) == [] and "<script" not in page.text
    assert not re.search(r"https?://", page.text), re.findall(r"https?://\S{0,60}", page.text)[:5]
