"""Real R APIs, as their authors wrote them, deployed together on a fresh lab host
and used through nginx as a client would (tests/e2e/apps/catalogue).

In order, on one host: the whole catalogue on a fresh host (timed); every API's
features; the docs' "Try it out" in a real browser; a no-op up; an up with an
unchanged renv.lock (nothing installed); a new lockfile, then a rollback that
brings the older release's packages back; removing one of two apps that share
a system package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.catalogue import CATALOGUE, DOCS_APPS, catalogue_config
from tests.e2e.conftest import Deployer, curl, get_json, status
from tests.lab.lab import Lab

ARTIFACTS = Path(__file__).resolve().parents[2] / ".lab" / "artifacts"


@pytest.fixture(scope="module")
def renv_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the renvapp the tests edit (code, then its lockfile)."""
    dst = tmp_path_factory.mktemp("apps") / "renvapp"
    shutil.copytree(CATALOGUE / "renvapp", dst)
    return dst


@pytest.fixture(scope="module")
def config(deployer: Deployer, renv_copy: Path) -> dict[str, Any]:
    return catalogue_config(deployer.base(), {"renvapp": renv_copy})


@pytest.fixture(scope="module")
def base(address: str) -> str:
    return f"http://{address}"


def deploy_log(result: Any, name: str) -> str:
    return "".join(s.stderr for s in result.steps if s.name == name)


def test_catalogue_deploys_on_a_fresh_host(deployer: Deployer, config: dict[str, Any], lab: Lab, host_name: str) -> None:
    started = time.monotonic()
    result = deployer.up(config)
    seconds = time.monotonic() - started
    apps = [a["name"] for a in config["apps"]]
    assert sorted(result.ops("create")) == sorted(
        ["provision-server", "site-nginx", "rotation-join"] + [f"{a}-{kind}" for a in apps for kind in ("upload", "deploy")]
    )
    suite = lab.host(host_name).suite
    print(f"catalogue: {len(apps)} APIs deployed on a fresh {suite} lab host in {seconds:.1f}s (provisioning included)")


def test_r_and_plumber_are_current(base: str, lab: Lab, host_name: str) -> None:
    v = get_json(f"{base}/renvapp/versions")
    if lab.host(host_name).suite == "trixie":
        assert v["R"][0].startswith("4.5.") and v["plumber"][0].startswith("1.3."), v


def test_serializers(base: str) -> None:
    def body(path: str) -> tuple[str, bytes]:
        res = subprocess.run(
            ["curl", "-sS", "-f", "--max-time", "30", "-D", "/dev/stderr", f"{base}/serializers{path}"], capture_output=True
        )
        assert res.returncode == 0, (path, res.stderr)
        ctype = next(
            line.split(":", 1)[1].strip() for line in res.stderr.decode().splitlines() if line.lower().startswith("content-type:")
        )
        return ctype, res.stdout

    ctype, data = body("/plot.png")
    assert ctype == "image/png" and data.startswith(b"\x89PNG")
    ctype, data = body("/hist.jpg")
    assert ctype == "image/jpeg" and data.startswith(b"\xff\xd8")
    ctype, data = body("/plot.svg")
    assert ctype.startswith("image/svg+xml") and b"<svg" in data
    ctype, data = body("/agg.png")
    assert ctype == "image/png" and data.startswith(b"\x89PNG")
    ctype, data = body("/svglite.svg")
    assert ctype.startswith("image/svg+xml") and b"<svg" in data
    ctype, data = body("/mtcars.csv?n=3")
    assert ctype.startswith("text/csv") and data.decode().splitlines()[0].startswith("mpg,cyl")
    assert len(data.decode().splitlines()) == 4
    ctype, data = body("/config.yaml")
    assert "yaml" in ctype and b"name: serializers" in data
    ctype, data = body("/page")
    assert ctype.startswith("text/html") and b"<h1>Hello from plumber</h1>" in data


def test_cookies_and_sessions(base: str, tmp_path: Path) -> None:
    jar, other = tmp_path / "jar", tmp_path / "other"
    seen = [get_json(f"{base}/sessions/visits", "-c", str(jar), "-b", str(jar))["visits"] for _ in range(3)]
    assert seen == [[1], [2], [3]]  # plumber's JSON boxes scalars
    assert get_json(f"{base}/sessions/visits", "-c", str(other), "-b", str(other))["visits"] == [1]
    cookie = next(line for line in jar.read_text().splitlines() if "\tsession\t" in line)
    assert "visits" not in cookie  # encrypted by pr_cookie
    get_json(f"{base}/sessions/remember?name=ada", "-c", str(jar), "-b", str(jar))
    assert get_json(f"{base}/sessions/whoami", "-b", str(jar)) == {"name": ["ada"]}


def test_attachments(base: str) -> None:
    res = curl("-D", "-", f"{base}/attachments/time")
    assert 'content-disposition: attachment; filename="time.txt"' in res.stdout.lower(), res.stdout
    res = curl("-D", "-", f"{base}/attachments/report")
    assert 'filename="report.csv"' in res.stdout and "mpg,cyl" in res.stdout


def test_static_assets(base: str) -> None:
    res = curl("-D", "-", f"{base}/assets/static/index.html")
    assert " 200 " in res.stdout.splitlines()[0] and "Static files served by plumber" in res.stdout
    res = curl("-D", "-", "-o", "/dev/null", f"{base}/assets/static/style.css")
    assert "content-type: text/css" in res.stdout.lower()
    assert status(f"{base}/assets/static/missing.css") == 404
    assert get_json(f"{base}/assets/hello")["message"][0].startswith("the page")


def test_async_answers_others_meanwhile(base: str) -> None:
    get_json(f"{base}/async/slow?seconds=0")  # the future workers start on first use
    slow = subprocess.Popen(["curl", "-sS", "--max-time", "30", f"{base}/async/slow?seconds=4"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        fast = get_json(f"{base}/async/fast")
        fast_seconds = time.monotonic() - started
        out, _ = slow.communicate(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
    slept = json.loads(out)
    assert fast_seconds < 2, f"/fast took {fast_seconds:.1f}s while /slow ran"
    assert slept["slept"] == [4] and slept["worker"] != fast["main"]


def test_entrypoint_with_sibling_files(base: str) -> None:
    assert get_json(f"{base}/entrypoint/shout?text=hi") == {"text": "HI!"}  # helpers.R, routes.R, unboxed JSON


def test_data_file_next_to_the_api(base: str) -> None:
    assert get_json(f"{base}/datafile/count") == {"rows": [50], "columns": ["speed", "dist"]}
    assert len(get_json(f"{base}/datafile/speed/4")) == 2


def test_filters_and_preempt(base: str, host: Any) -> None:
    assert status(f"{base}/filters/secret") == 401
    assert get_json(f"{base}/filters/secret", "-H", "X-Token: let-me-in") == {"secret": [42]}
    assert get_json(f"{base}/filters/public") == {"public": [True]}
    assert "GET /public" in host.check_output("journalctl -u 'plumber-filters@*' --no-pager -o cat")  # logger filter


def test_json_form_and_multipart_bodies(base: str, tmp_path: Path) -> None:
    j = ("-H", "Content-Type: application/json")
    assert get_json(f"{base}/bodies/sum", "-X", "POST", *j, "-d", '{"a": 2, "b": 3.5}') == {"sum": [5.5]}
    assert get_json(f"{base}/bodies/sum", "-X", "POST", "-d", "a=2&b=40") == {"sum": [42]}
    nested = {"user": {"name": "ada", "langs": ["R", "C"]}}
    echoed = get_json(f"{base}/bodies/echo", "-X", "POST", *j, "-d", json.dumps(nested))
    assert echoed == {"user": {"name": ["ada"], "langs": ["R", "C"]}}  # plumber's JSON boxes scalars
    form = get_json(f"{base}/bodies/form", "--data-urlencode", "name=Ada Lovelace", "-d", "age=36")
    assert form == {"name": ["Ada Lovelace"], "age": [36], "content_type": ["application/x-www-form-urlencoded"]}
    upload = tmp_path / "measurements.bin"
    upload.write_bytes(bytes(range(256)) * 40)
    got = get_json(f"{base}/bodies/upload", "-F", f"upload=@{upload};type=application/octet-stream")
    assert got == {"filename": ["measurements.bin"], "bytes": [10240]}


def test_error_handler(base: str) -> None:
    res = curl("-w", "\n%{http_code}", f"{base}/errors/boom")
    body, code = res.stdout.rsplit("\n", 1)
    assert code == "500" and json.loads(body) == {"error": ["custom handler"], "message": ["kaboom"]}
    res = curl("-w", "\n%{http_code}", f"{base}/errors/nope")
    body, code = res.stdout.rsplit("\n", 1)
    assert code == "404" and json.loads(body)["path"] == ["/nope"]
    assert status(f"{base}/errors/teapot") == 418


def test_renv_lock_gets_the_locked_version(base: str, deployer: Deployer) -> None:
    latest = curl(f"{deployer.cran.url}/src/contrib/PACKAGES").stdout
    assert "Package: phversion\nVersion: 2.0.0" in latest  # the repository's latest is newer
    v = get_json(f"{base}/renvapp/versions")
    assert v["phversion"] == ["1.0.0"] and "/renv-libraries/" in v["phversion_from"][0], v
    print(f"renv.lock: phversion {v['phversion'][0]} (locked) while the repository's latest is 2.0.0")


def test_pin_and_system_requirement(base: str, host: Any) -> None:
    assert get_json(f"{base}/pinned/version") == {"phversion": ["1.0.0"]}
    got = get_json(f"{base}/sysreq/first")
    assert got["first"] == [3] and got["jq"][0].startswith("jq-"), got
    assert host.package("jq").is_installed


def test_docs_try_it_out_in_a_real_browser(base: str, address: str) -> None:
    """Each docs page in headless Chromium: "Try it out" on a GET reaches the API through its prefix."""
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            for app in DOCS_APPS:
                page = browser.new_page()
                page.goto(f"{base}/{app}/__docs__/", wait_until="networkidle", timeout=60000)
                op = page.locator(".opblock-get").first
                op.locator(".opblock-summary").click()
                op.locator("button.try-out__btn").click()
                with page.expect_response(lambda r: "/__docs__/" not in r.url and "openapi.json" not in r.url) as resp:
                    op.locator("button.execute").click()
                response = resp.value
                assert response.url.startswith(f"{base}/{app}/"), response.url
                assert response.status == 200, (app, response.url, response.status)
                op.locator(".live-responses-table tbody .response-col_status").first.wait_for(timeout=20000)
                shown = op.locator(".live-responses-table tbody .response-col_status").first.inner_text().strip()
                assert shown == "200", (app, shown)
                page.screenshot(path=str(ARTIFACTS / f"docs-{app}.png"), full_page=True)
                print(f"docs {app}: Try it out -> {response.url} answered {response.status}; screenshot .lab/artifacts/docs-{app}.png")
                page.close()
        finally:
            browser.close()
    spec = get_json(f"{base}/cars/openapi.json")
    assert spec["servers"] == [{"url": f"http://{address}/cars"}]


def test_no_op_up_runs_no_command(deployer: Deployer, config: dict[str, Any]) -> None:
    result = deployer.up(config)
    assert result.ran == [], result.ran
    print(f"no-op up: {len(result.ran)} commands")


def test_unchanged_lockfile_installs_nothing(deployer: Deployer, config: dict[str, Any], renv_copy: Path, base: str) -> None:
    code = renv_copy / "plumber.R"
    code.write_text(code.read_text() + "\n# a change to the code only\n")
    started = time.monotonic()
    result = deployer.up(config)
    seconds = time.monotonic() - started
    assert sorted(result.ran) == ["update renvapp-deploy", "update renvapp-upload"]
    log = deploy_log(result, "renvapp-deploy")
    assert "unchanged: library" in log and "restoring renv.lock" not in log and "installing" not in log, log
    assert get_json(f"{base}/renvapp/versions")["phversion"] == ["1.0.0"]
    print(f"up with an unchanged renv.lock: {seconds:.1f}s, nothing installed")


def test_new_lockfile_then_rollback_restores_packages(deployer: Deployer, config: dict[str, Any], renv_copy: Path, base: str) -> None:
    lock = renv_copy / "renv.lock"
    original_lock, original_code = lock.read_text(), (renv_copy / "plumber.R").read_text()
    lock.write_text(original_lock.replace('"Version": "1.0.0"', '"Version": "2.0.0"'))
    result = deployer.up(config)
    assert "restoring renv.lock" in deploy_log(result, "renvapp-deploy")
    newer = get_json(f"{base}/renvapp/versions")["phversion"][0]
    assert newer == "2.0.0"
    # back to the release before: its code and its lockfile
    lock.write_text(original_lock)
    (renv_copy / "plumber.R").write_text(original_code)
    result = deployer.up(config)
    log = deploy_log(result, "renvapp-deploy")
    assert "already on the server" in log and "unchanged: library" in log and "restoring" not in log, log
    older = get_json(f"{base}/renvapp/versions")["phversion"][0]
    assert older == "1.0.0"
    print(f"rollback: phversion {newer} -> {older} (the kept release's library, nothing installed)")


def test_shared_system_package_stays_when_one_app_goes(deployer: Deployer, config: dict[str, Any], base: str, host: Any) -> None:
    cfg = dict(config, apps=[a for a in config["apps"] if a["name"] != "sysreq"])
    result = deployer.up(cfg)
    assert sorted(result.ran) == ["delete sysreq-deploy", "delete sysreq-upload"]
    assert status(f"{base}/sysreq/first") == 404
    assert host.package("jq").is_installed  # pinned lists it too; plumber-hosting never removes system packages
    assert get_json(f"{base}/pinned/version") == {"phversion": ["1.0.0"]}
