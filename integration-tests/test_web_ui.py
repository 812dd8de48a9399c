"""The governance web UI at /ui/ (issue 11 items 1-2, issue 16's insecure-context point), driven end to end by
headless Chromium (Debian's chromium + chromedriver, selenium from PyPI) against the real binary, with the real
huggingface_hub client creating the review requests and downloading what the UI approved.

Screenshots go to integration-tests/artifacts/ (gitignored), one per step, named for what they show.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (HERE, airlock_bin, expect_ok, hf_call, request, sha256, start_airlock, toml_str)
from fake_hub import model_bytes

os.environ.setdefault("SE_AVOID_STATS", "true")  # else Selenium Manager tries the network first
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ADMIN_TOKEN = "ui-admin-token-0123456789"
REVIEWER_TOKEN = "ui-reviewer-alice-token-42"
PULLER_TOKEN = "ui-puller-token-without-roles"
REQ_ID = re.compile(r"req-[0-9a-f]+")
APPR_ID = re.compile(r"appr-[0-9a-f]{12}")
ARTIFACTS = HERE / "artifacts"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1100"]


class _Evil:
    """Unpickling this runs a shell command."""
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def card(title: str) -> str:
    return f"---\nlicense: apache-2.0\n---\n# {title}\n"


REPOS = {
    "uiacme/evil": {"README.md": card("evil"), "config.json": "{}\n",
                    "pytorch_model.bin": pickle.dumps(_Evil(), protocol=2)},
    "uiacme/clean": {"README.md": card("clean"), "config.json": json.dumps({"model_type": "ui"}) + "\n",
                     "model.safetensors": model_bytes(8192 + 5, "ui-clean")},
    "uiacme/other": {"README.md": card("other"), "config.json": "{\"other\": true}\n"},
}


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "HF_"))}
    env.update({"AIRLOCK_SERVER": url, "AIRLOCK_ADMIN_TOKEN": ADMIN_TOKEN, "RUST_LOG": "warn"})
    p = subprocess.run([str(airlock_bin()), *args], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, f"{args}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def browser(tmp: Path, *extra: str) -> webdriver.Chrome:
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for f in CHROMIUM_FLAGS + list(extra):
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp}")
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.implicitly_wait(5)
    return d


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


class UI:
    def __init__(self, airlock, root: Path, key: Path, other_key: Path, requests: dict):
        self.airlock, self.root, self.key, self.other_key, self.requests = airlock, root, key, other_key, requests
        self.driver = None


def wait_for_report(a, req: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        st, _, body = request(a, "GET", f"/admin/requests/{req}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        r = json.loads(body)
        if r.get("report") or r.get("report_error"):
            return r
        assert time.monotonic() < deadline, f"no prefetch report for {req}: {r}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def ui(fake_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    for name, files in REPOS.items():
        if ("model", name) not in fake_hub.repos:
            fake_hub.add_repo(name, files)
    cli("http://unused", "keygen", "--out", str(root / "keys"))
    cli("http://unused", "keygen", "--out", str(root / "other"))
    policy = f"""
[policy]
mode = "allowlist"
licenses = ["apache-2.0"]
[governance]
keys = [{toml_str(str(root / "keys" / "governance.pub"))}]
admin_token = {toml_str(ADMIN_TOKEN)}
prefetch_requests = true
[[clients]]
name = "alice"
token_sha256 = "{hashlib.sha256(REVIEWER_TOKEN.encode()).hexdigest()}"
roles = ["reviewer"]
[[clients]]
name = "ci-bot"
token_sha256 = "{hashlib.sha256(PULLER_TOKEN.encode()).hexdigest()}"
"""
    a = start_airlock(root / "airlock", fake_hub, policy=policy)
    requests = {}
    try:
        for name in REPOS:
            out = hf_call(a, root / f"home-{name.split('/')[1]}", {"op": "download", "repo": name,
                                                                    "filename": "config.json"})
            assert not out["ok"], out
            m = REQ_ID.search(out["message"])
            assert m, out["message"]
            # The refusal a client sees links to the request's page in the UI.
            assert f"{a.url}/ui/requests/{m.group(0)}" in out["message"], out["message"]
            requests[name] = m.group(0)
        for req in requests.values():
            wait_for_report(a, req)
        u = UI(a, root, root / "keys" / "governance.key", root / "other" / "governance.key", requests)
        u.driver = browser(root / "chromium")
        yield u
    finally:
        if requests and "u" in locals() and u.driver:
            u.driver.quit()
        a.stop()
        if os.environ.get("AIRLOCK_TEST_SHOW_LOG"):
            print(a.log())


def click_and_wait(driver, element_id: str) -> None:
    """Clicks a button that leads to a new page and waits until the old page is gone. Signing buttons submit
    their form only once WebCrypto is done (asynchronously); a signing error stays on the page and is shown."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()

    def done(d):
        if staleness_of(old)(d):
            return True
        errors = d.find_elements(By.CSS_SELECTOR, "#sign-error:not([hidden])")
        if errors:
            raise AssertionError(f"signing failed in the page: {errors[0].text}")
        return False
    driver.implicitly_wait(0)  # the polls below must not each wait for elements that may never come
    try:
        WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(done)
    finally:
        driver.implicitly_wait(5)


def login(driver, base: str, token: str) -> None:
    driver.get(f"{base}/ui/requests")
    assert "/ui/login" in driver.current_url, driver.current_url
    driver.find_element(By.ID, "token").send_keys(token)
    click_and_wait(driver, "login")


def session_and_csrf(driver) -> tuple[str, str]:
    cookie = driver.get_cookie("airlock_ui")
    assert cookie, driver.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui", cookie
    csrf = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    return cookie["value"], csrf


def post_form(a, path: str, fields: dict, cookie: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = f"airlock_ui={cookie}"
    st, _, body = request(a, "POST", path, headers=headers, body=urllib.parse.urlencode(fields).encode())
    return st, body.decode(errors="replace")


def test_login_refuses_a_wrong_token_and_a_token_without_a_role(ui):
    d = ui.driver
    for token in ["not-a-token", PULLER_TOKEN]:
        login(d, ui.airlock.url, token)
        assert "/ui/login" in d.current_url or d.find_elements(By.ID, "login-error"), d.current_url
        assert "wrong token" in text(d, "#login-error")
        assert d.get_cookie("airlock_ui") is None
    shot(d, "01-login-refused-wrong-token")
    # Without a session no page and no form post is served.
    st, _, _ = request(ui.airlock, "GET", "/ui/requests")
    assert st == 303
    st, body = post_form(ui.airlock, f"/ui/requests/{ui.requests['uiacme/evil']}/deny", {"reason": "x"}, None)
    assert st == 401, (st, body)
    # The right token without the login form's CSRF token (a login forged by another site) is refused too.
    st, h, _ = request(ui.airlock, "POST", "/ui/login", headers={"Content-Type": "application/x-www-form-urlencoded"},
                       body=urllib.parse.urlencode({"token": REVIEWER_TOKEN}).encode())
    assert st == 403 and not any("airlock_ui=" in c for c in h.get_all("Set-Cookie") or []), st
    # The admin token logs in too (as "admin"), with the login form's token and cookie.
    st, h, body = request(ui.airlock, "GET", "/ui/login")
    login_cookie = next(c.split(";")[0] for c in h.get_all("Set-Cookie") if c.startswith("airlock_ui_login="))
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', body.decode()).group(1)
    st, h, _ = request(ui.airlock, "POST", "/ui/login", headers={"Content-Type": "application/x-www-form-urlencoded",
                                                                  "Cookie": login_cookie},
                       body=urllib.parse.urlencode({"token": ADMIN_TOKEN, "csrf": csrf}).encode())
    session = [c for c in h.get_all("Set-Cookie") or [] if c.startswith("airlock_ui=")]
    assert st == 303 and session and "HttpOnly" in session[0] and "SameSite=Strict" in session[0], (st, session)
    st, _, body = request(ui.airlock, "GET", "/ui/requests", headers={"Cookie": session[0].split(";")[0]})
    assert st == 200 and b'id="who">admin<' in body, st


def test_reviewer_sees_the_malicious_finding_and_the_queue(ui):
    d = ui.driver
    login(d, ui.airlock.url, REVIEWER_TOKEN)
    assert d.current_url.endswith("/ui/requests"), d.current_url
    assert text(d, "#who") == "alice"
    table = text(d, "#requests")
    for name, req in ui.requests.items():
        assert req in table and name in table, table
    shot(d, "02-pending-requests")

    d.get(f"{ui.airlock.url}/ui/requests/{ui.requests['uiacme/evil']}")
    row = d.find_element(By.CSS_SELECTOR, "#files tr.file-refused")
    assert "pytorch_model.bin" in row.text and "os.system" in row.text, row.text
    assert "critical" in row.text, row.text
    assert "Known code execution" in row.find_element(By.CSS_SELECTOR, ".meaning").text
    assert "127.0.0.1" in text(d, "#askers") and "1 times" in text(d, "#ask-count")
    assert "apache-2.0" in text(d, "#licence")
    assert "cannot be approved" in text(d, "#not-approvable")
    assert "airlock requests approve" in text(d, "#cli")
    shot(d, "03-malicious-pickle-finding")


def test_missing_csrf_and_forged_records_are_refused(ui):
    d = ui.driver
    evil = ui.requests["uiacme/evil"]
    d.get(f"{ui.airlock.url}/ui/requests/{evil}")
    cookie, csrf = session_and_csrf(d)
    for fields in [{"reason": "no csrf"}, {"reason": "bad csrf", "csrf": "0" * 64}]:
        st, body = post_form(ui.airlock, f"/ui/requests/{evil}/deny", fields, cookie)
        assert st == 403 and "CSRF" in body, (st, body)
    st, _, body = request(ui.airlock, "GET", f"/admin/requests/{evil}",
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert json.loads(body)["status"] == "pending"

    # A record signed by a key the server does not trust, and a trusted one altered after signing.
    forged = ui.root / "forged"
    cli(ui.airlock.url, "approve", "hf", "uiacme/clean", "--key", str(ui.other_key), "--by", "mallory",
        "--reason", "forged", "--no-send", "--out", str(forged / "other"))
    cli(ui.airlock.url, "approve", "hf", "uiacme/clean", "--key", str(ui.key), "--by", "alice",
        "--reason", "genuine", "--no-send", "--out", str(forged / "altered"))
    other = next((forged / "other").glob("appr-*.json")).read_text()
    altered = json.loads(next((forged / "altered").glob("appr-*.json")).read_text())
    altered["reason"] = "altered after signing"
    for record, why in [(other, "not a trusted governance key"), (json.dumps(altered), "changed")]:
        st, body = post_form(ui.airlock, "/ui/approvals", {"csrf": csrf, "record": record}, cookie)
        message = re.search(r'id="message">([^<]*)<', body)
        assert st == 400 and message and re.search(why, message.group(1)), (st, body)
        print("refused:", message.group(1))
    # The genuine record without the CSRF token is refused too.
    genuine = next((forged / "altered").glob("appr-*.json")).read_text()
    st, body = post_form(ui.airlock, "/ui/approvals", {"record": genuine}, cookie)
    assert st == 403, (st, body)
    st, _, body = request(ui.airlock, "GET", "/admin/approvals", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert json.loads(body)["approvals"] == [], body
    d.get(f"{ui.airlock.url}/ui/requests/{evil}")  # the page state for the screenshot
    shot(d, "04-forged-and-csrf-refused-nothing-approved")


def test_deny_is_audited_under_the_reviewer(ui, tmp_path):
    d = ui.driver
    evil = ui.requests["uiacme/evil"]
    d.get(f"{ui.airlock.url}/ui/requests/{evil}")
    d.find_element(By.ID, "deny-reason-input").send_keys("runs os.system when loaded")
    click_and_wait(d, "deny")
    assert text(d, "#request-status") == "denied"
    assert "alice" in d.page_source
    out = hf_call(ui.airlock, tmp_path / "h", {"op": "download", "repo": "uiacme/evil", "filename": "config.json"})
    assert not out["ok"] and "denied by alice" in out["message"], out
    shot(d, "05-denied-by-reviewer")


def test_approve_in_browser_download_revoke(ui, fake_hub, tmp_path):
    d = ui.driver
    clean = ui.requests["uiacme/clean"]
    d.get(f"{ui.airlock.url}/ui/requests/{clean}")
    assert d.find_element(By.ID, "insecure-context").is_displayed() is False
    assert "No version of this name has been approved before" in text(d, "#previous")
    d.find_element(By.ID, "reason").send_keys("evaluated in the browser test")
    d.find_element(By.ID, "keyfile").send_keys(str(ui.key))
    shot(d, "06-approve-form-with-key-file")
    click_and_wait(d, "sign-approve")
    m = APPR_ID.search(d.current_url)
    assert m, (d.current_url, d.page_source[-2000:])
    appr = m.group(0)
    assert text(d, "#approval-status") == "in force"
    assert "model.safetensors" in text(d, "#pinned")
    shot(d, "07-approved-version")

    # The server stored exactly what the browser signed, under the trusted key.
    st, _, body = request(ui.airlock, "GET", "/admin/approvals", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    [entry] = json.loads(body)["approvals"]
    assert entry["id"] == appr and entry["record"]["revision"] == fake_hub.sha("uiacme/clean")
    assert entry["record"]["approved_by"] == "alice" and entry["record"]["revision_name"] == "main"

    files = REPOS["uiacme/clean"]
    got = expect_ok(hf_call(ui.airlock, tmp_path / "h1", {"op": "download", "repo": "uiacme/clean",
                                                          "filename": "model.safetensors"}), ui.airlock)
    assert got["sha256"] == sha256(files["model.safetensors"])

    d.get(f"{ui.airlock.url}/ui/approvals/{appr}")
    assert "model.safetensors" in text(d, "#downloads") and "127.0.0.1" in text(d, "#downloads")
    shot(d, "08-who-downloaded")

    d.find_element(By.ID, "reason").send_keys("withdrawn by the browser test")
    d.find_element(By.ID, "keyfile").send_keys(str(ui.key))
    click_and_wait(d, "sign-revoke")
    assert text(d, "#approval-status").startswith("revoked by alice"), text(d, "#approval-status")
    shot(d, "09-revoked")

    out = hf_call(ui.airlock, tmp_path / "h2", {"op": "download", "repo": "uiacme/clean",
                                                "filename": "model.safetensors"})
    assert not out["ok"] and "revoked" in out["message"], out

    d.get(f"{ui.airlock.url}/ui/revocations")
    assert appr in text(d, "#revocations")
    shot(d, "10-revocations")
    d.get(f"{ui.airlock.url}/ui/refusals")
    assert "uiacme/clean" in text(d, "#refusals") and "revoked" in text(d, "#refusals")
    shot(d, "11-refusals")
    d.get(f"{ui.airlock.url}/ui/audit")
    assert text(d, "#audit-status").startswith("verified"), text(d, "#audit-status")
    audit = text(d, "#audit")
    assert "approval" in audit and "revocation" in audit and "denied_by=alice" in audit, audit
    shot(d, "12-audit-log-verified")


def test_new_version_is_compared_with_the_previous_approval_and_approved(ui, fake_hub, tmp_path):
    """A new upstream commit of an approved repo: the reviewer fetches it for review from the UI, sees which files
    changed against the previous approval, signs it in the browser, and huggingface_hub gets the new bytes."""
    d = ui.driver
    new_weights = model_bytes(8192 + 9, "ui-clean-v2")
    # Asked by commit: the mirror may still hold `main` resolved to the old commit (refs are cached).
    v2 = fake_hub.commit("uiacme/clean", {"model.safetensors": new_weights, "tokenizer.json": "{\"v\": 2}\n"})
    d.get(f"{ui.airlock.url}/ui/approvals")
    d.find_element(By.ID, "version-name-input").send_keys("uiacme/clean")
    d.find_element(By.ID, "version-revision").send_keys(v2)
    click_and_wait(d, "review")
    click_and_wait(d, "prepare")
    assert "/ui/version?" in d.current_url, d.current_url
    changes = {row.find_element(By.CSS_SELECTOR, "td code").text: row.find_elements(By.TAG_NAME, "td")[1].text
               for row in d.find_elements(By.CSS_SELECTOR, "#diff tr[class^=diff-]")}
    assert changes == {"README.md": "same", "config.json": "same", "model.safetensors": "changed",
                       "tokenizer.json": "added"}, changes
    shot(d, "14-new-version-diff-against-previous-approval")
    d.find_element(By.ID, "reason").send_keys("v2 evaluated")
    d.find_element(By.ID, "keyfile").send_keys(str(ui.key))
    click_and_wait(d, "sign-approve")
    assert APPR_ID.search(d.current_url) and text(d, "#approval-status") == "in force", d.current_url
    got = expect_ok(hf_call(ui.airlock, tmp_path / "h", {"op": "download", "repo": "uiacme/clean", "revision": v2,
                                                         "filename": "model.safetensors"}), ui.airlock)
    assert got["sha256"] == sha256(new_weights)


def test_logout_ends_the_session(ui):
    d = ui.driver
    d.get(f"{ui.airlock.url}/ui/requests")
    cookie, _ = session_and_csrf(d)
    click_and_wait(d, "logout")
    assert "/ui/login" in d.current_url
    st, _, _ = request(ui.airlock, "GET", "/ui/requests", headers={"Cookie": f"airlock_ui={cookie}"})
    assert st == 303, "the old session cookie still works after logout"


def test_insecure_context_explains_and_offers_the_cli(ui, tmp_path):
    """http://airlock.test is not a secure context (only localhost is): no WebCrypto, so the page says why
    and shows the CLI path instead of a signing form that cannot work."""
    d = browser(tmp_path / "chromium", "--host-resolver-rules=MAP airlock.test 127.0.0.1")
    try:
        base = f"http://airlock.test:{ui.airlock.port}"
        login(d, base, REVIEWER_TOKEN)
        d.get(f"{base}/ui/requests/{ui.requests['uiacme/other']}")
        assert d.execute_script("return window.isSecureContext") is False
        notice = d.find_element(By.ID, "insecure-context")
        assert notice.is_displayed() and "not a secure context" in notice.text.replace("\n", " ") or \
            "insecure context" in notice.text, notice.text
        assert f"airlock.test:{ui.airlock.port}" in notice.text
        assert not d.find_element(By.ID, "signer").is_displayed()
        assert "airlock requests approve" in text(d, "#cli")
        shot(d, "15-insecure-context-notice")
    finally:
        d.quit()
