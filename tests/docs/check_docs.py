"""Drives headless Chromium over the DevTools protocol to check GET /docs.

Chromium speaks the protocol on file descriptors 3 (commands in) and 4
(answers and events out), NUL-delimited JSON (--remote-debugging-pipe), so
this needs nothing beyond the standard library.

What it checks, failing with a message otherwise:
- every operation of /openapi.json is rendered as an operation block;
- every request the page makes goes to the server under test on 127.0.0.1
  (Chromium also runs with a dead proxy for everything but loopback, so a
  request elsewhere would fail rather than leave the machine);
- "Try it out" on GET /v1/admin/callers, after "Authorize" with the admin's
  Basic credentials (Swagger UI's own preauthorizeBasic), answers 200 and
  was sent with an Authorization: Basic header to the same origin;
- a screenshot is written to OUT/docs.png.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import ssl


class Browser:
    def __init__(self, profile):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():
            # Copies first: a pipe end may already be fd 3 or 4, and
            # dup2 onto itself would keep its close-on-exec flag.
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--ignore-certificate-errors",
                f"--user-data-dir={profile}", "--window-size=1280,2000",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps",
                "--disable-extensions", "--disable-sync",
                # Anything not on loopback goes to a proxy that is not
                # there; loopback bypasses proxies by default.
                "--proxy-server=http://127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "about:blank",
            ],
            preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=None, timeout=30):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def evaluate(browser, session, expression):
    result = browser.send(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
        session,
    )
    if "exceptionDetails" in result:
        raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
    return result["result"].get("value")


def wait_for(browser, session, expression, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = evaluate(browser, session, expression)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def fetch_spec(base):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"{base}/openapi.json", context=ctx) as res:
        return json.load(res)


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--base", required=True)
    args.add_argument("--user", required=True)
    args.add_argument("--password", required=True)
    args.add_argument("--out", required=True)
    opts = args.parse_args()
    origin = urllib.parse.urlsplit(opts.base)
    assert origin.hostname == "127.0.0.1", opts.base

    spec = fetch_spec(opts.base)
    operations = sum(
        1 for item in spec["paths"].values() for m in item
        if m in ("get", "put", "post", "delete", "patch")
    )

    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(profile)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})
            session = browser.send(
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
            )["sessionId"]
            for domain in ("Page", "Network", "Runtime"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Page.navigate", {"url": f"{opts.base}/docs"}, session)

            rendered = wait_for(
                browser, session,
                f"document.querySelectorAll('.opblock').length >= {operations}"
                " && document.querySelectorAll('.opblock').length",
                f"{operations} operations rendered",
            )
            print(f"docs: {rendered} operations rendered ({operations} in /openapi.json)")

            # "Authorize" with Basic, as a person would in the dialog.
            evaluate(
                browser, session,
                f"window.ui.preauthorizeBasic('basic', {json.dumps(opts.user)}, "
                f"{json.dumps(opts.password)}) && true",
            )
            block = "#operations-admin-list_callers"
            wait_for(browser, session, f"!!document.querySelector('{block}')", block)
            # The summary's button expands the operation (Swagger UI 5).
            evaluate(
                browser, session,
                f"(document.querySelector('{block} .opblock-summary-control')"
                f" || document.querySelector('{block} .opblock-summary')).click()",
            )
            wait_for(browser, session, f"!!document.querySelector('{block} .try-out__btn')", "Try it out")
            # tryItOutEnabled opens "Try it out" already; the button then
            # reads "Cancel" and must not be clicked.
            evaluate(
                browser, session,
                f"void (document.querySelector('{block} .execute')"
                f" || document.querySelector('{block} .try-out__btn').click())",
            )
            wait_for(browser, session, f"!!document.querySelector('{block} .execute')", "Execute")
            evaluate(browser, session, f"document.querySelector('{block} .execute').click()")
            status = wait_for(
                browser, session,
                f"(document.querySelector('{block} .live-responses-table tr.response .response-col_status')"
                " || {}).textContent",
                "the Try it out answer",
            )
            print(f"docs: Try it out GET /v1/admin/callers answered {status.strip()}")
            assert status.strip() == "200", f"Try it out answered {status!r}"

            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
            path = os.path.join(opts.out, "docs.png")
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print(f"docs: screenshot {path}")

            # Drain what arrived meanwhile, then look at every request.
            browser.send("Runtime.evaluate", {"expression": "1"}, session)
            requests = [
                e["params"]["request"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"
            ]
            off_host = [
                r["url"] for r in requests
                if urllib.parse.urlsplit(r["url"]).scheme in ("http", "https", "ws", "wss")
                and urllib.parse.urlsplit(r["url"]).netloc != origin.netloc
            ]
            assert not off_host, f"requests left {origin.netloc}: {off_host}"
            assert any(r["url"] == f"{opts.base}/openapi.json" for r in requests), \
                "the page did not load /openapi.json"
            tried = [
                r for r in requests
                if r["url"].startswith(f"{opts.base}/v1/admin/callers")
            ]
            assert tried, "no Try it out request seen"
            auth = {k.lower(): v for k, v in tried[-1]["headers"].items()}.get("authorization", "")
            assert auth.startswith("Basic "), f"Try it out sent no Basic auth: {tried[-1]}"
            print(f"docs: {len(requests)} requests, all to {origin.netloc}")
        finally:
            browser.close()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"docs: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
