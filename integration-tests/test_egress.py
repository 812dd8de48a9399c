"""Egress (issue 16): upstream traffic through a corporate CONNECT proxy whose TLS is signed by a corporate CA.
The fake Hub (API and CDN) speaks HTTPS with a certificate from a CA made in the test (tls_support.py); Airlock
reaches it only through `ConnectProxy`, which records every tunnel.

- With `[upstream] proxy` and `ca_files = [the CA]`: files are fetched (API and CDN redirect), through the proxy.
- Without the CA: refused, and both the client's error and the server log say it is a certificate problem.
- `HTTPS_PROXY` from the environment works the same; `NO_PROXY` exempts a host.
- The redirect-host check still applies through the proxy: no tunnel to an unlisted host is ever opened.
"""

from __future__ import annotations

import json
import ssl

import pytest

from conftest import error_text, expect_ok, hf_call, settle, sha256, start_airlock
from connect_proxy import ConnectProxy
from fake_hub import FakeHub, model_bytes
from tls_support import issue, make_ca

FILES = {
    "config.json": json.dumps({"model_type": "corp"}) + "\n",
    "model.safetensors": model_bytes(96 * 1024 + 1, "egress-model"),
    "redirect.safetensors": model_bytes(8 * 1024, "egress-redirect"),
}
REPO = "corp/model"
NOT_FROM_ENV = {"HTTPS_PROXY": "", "https_proxy": "", "HTTP_PROXY": "", "http_proxy": "", "ALL_PROXY": "",
                "all_proxy": "", "NO_PROXY": "", "no_proxy": ""}


@pytest.fixture(scope="module")
def corp(tmp_path_factory):
    """The CA, an HTTPS fake Hub with a certificate from it, and the proxy."""
    tmp = tmp_path_factory.mktemp("egress")
    ca = make_ca(tmp / "ca", "Corp Inspecting Proxy CA")
    leaf = issue(ca, tmp / "hub", ["127.0.0.1"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    hub = FakeHub(xet=False, tls=ctx)
    hub.add_repo(REPO, FILES)
    hub.start()
    proxy = ConnectProxy().start()
    yield ca, hub, proxy
    proxy.stop()
    hub.stop()


@pytest.fixture
def airlock_factory(corp, tmp_path):
    """Airlocks in front of the HTTPS fake Hub, stopped at the end of the test."""
    started = []

    def make(**kw):
        a = start_airlock(tmp_path / f"a{len(started)}", corp[1], **kw)
        started.append(a)
        return a

    yield make
    for a in started:
        a.stop()


def policy(proxy: str | None, ca_files: list[str]) -> str:
    up = "[upstream]\n" + (f'proxy = "{proxy}"\n' if proxy else "") + f"ca_files = {json.dumps(ca_files)}\n"
    return f'[policy]\nmode = "allowlist"\n[[policy.allow]]\nhf = "{REPO}"\n' + up


def test_fetch_through_the_proxy_trusting_the_corporate_ca(corp, airlock_factory, tmp_path):
    ca, hub, proxy = corp
    a = airlock_factory(policy=policy(proxy.url, [str(ca.cert)]), env=NOT_FROM_ENV)
    before_api, before_cdn = proxy.tunnels_to(f"127.0.0.1:{hub.hub_port}"), proxy.tunnels_to(hub.cdn_hostport)
    for name in ("config.json", "model.safetensors"):
        out = expect_ok(hf_call(a, tmp_path / "home", {"op": "download", "repo": REPO, "filename": name}), a)
        data = FILES[name] if isinstance(FILES[name], bytes) else FILES[name].encode()
        assert out["sha256"] == sha256(data), name
    assert proxy.tunnels_to(f"127.0.0.1:{hub.hub_port}") > before_api, proxy.tunnels
    assert proxy.tunnels_to(hub.cdn_hostport) > before_cdn, f"the CDN redirect bypassed the proxy: {proxy.tunnels}"
    assert not proxy.forwarded, "https went through the proxy in clear"


def test_without_the_corporate_ca_the_certificate_is_refused_clearly(corp, airlock_factory):
    ca, hub, proxy = corp
    a = airlock_factory(policy=policy(proxy.url, []), env=NOT_FROM_ENV)
    before = proxy.tunnels_to(f"127.0.0.1:{hub.hub_port}")
    st, h, body = settle(a, "GET", f"/{REPO}/resolve/main/config.json")
    reason = error_text(h, body)
    assert st == 502, (st, reason)
    assert "certificate" in reason.lower() and "ca_files" in reason, reason
    assert proxy.tunnels_to(f"127.0.0.1:{hub.hub_port}") > before, "the refused fetch did not use the proxy"
    assert "upstream TLS certificate refused" in a.log() and "UnknownIssuer" in a.log(), a.log()[-3000:]
    assert not a.holds_content(FILES["config.json"].encode())


def test_https_proxy_from_the_environment_and_no_proxy(corp, airlock_factory, tmp_path):
    ca, hub, proxy = corp
    env = {**NOT_FROM_ENV, "HTTPS_PROXY": proxy.url}
    a = airlock_factory(policy=policy(None, [str(ca.cert)]), env=env)
    before = proxy.tunnels_to(f"127.0.0.1:{hub.hub_port}")
    st, _, body = settle(a, "GET", f"/{REPO}/resolve/main/config.json")
    assert st == 200 and body == FILES["config.json"].encode()
    assert proxy.tunnels_to(f"127.0.0.1:{hub.hub_port}") > before
    # NO_PROXY exempts the host: fetched directly, no new tunnel.
    b = airlock_factory(policy=policy(None, [str(ca.cert)]), env={**env, "NO_PROXY": "127.0.0.1"})
    before = len(proxy.tunnels)
    st, _, body = settle(b, "GET", f"/{REPO}/resolve/main/model.safetensors")
    assert st == 200 and body == FILES["model.safetensors"]
    assert len(proxy.tunnels) == before, proxy.tunnels[before:]


def test_redirect_host_check_holds_through_the_proxy(corp, airlock_factory):
    ca, hub, proxy = corp
    a = airlock_factory(policy=policy(proxy.url, [str(ca.cert)]), env=NOT_FROM_ENV)
    hub.set_fault(REPO, "redirect.safetensors", redirect_elsewhere=True)
    try:
        st, h, body = settle(a, "GET", f"/{REPO}/resolve/main/redirect.safetensors")
    finally:
        hub.clear_faults()
    assert st == 502 and "redirect to unlisted host 127.0.0.2" in error_text(h, body), (st, error_text(h, body))
    assert not any(t.startswith("127.0.0.2") for t in proxy.tunnels), proxy.tunnels
