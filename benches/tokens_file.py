#!/usr/bin/env python3
"""Introspection bodies for `make bench`: N distinct tokens, one form per line.

    python3 benches/tokens_file.py URL CALLER:SECRET AUDIENCE N > FILE

Asks URL/v1/tokens N times (8 at once) as CALLER for AUDIENCE, and prints
`token=<token>` per line: wrk (benches/wrk/checked.lua, BENCH_BODIES) then
introspects them in turn. The server is asapd on loopback, started by
benches/run.sh with its own throwaway certificate, so TLS is not verified.
"""
import base64
import json
import ssl
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def main():
    url, credentials, audience, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    body = json.dumps({"audience": audience, "lifetime": 600}).encode()
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    def one(_):
        req = urllib.request.Request(
            url + "/v1/tokens", data=body, method="POST",
            headers={"Authorization": auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=insecure, timeout=30) as res:
            return json.load(res)["token"]

    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(one, range(n)))
    if len(set(tokens)) != n:
        sys.exit(f"tokens_file: {len(set(tokens))} distinct tokens of {n}")
    sys.stdout.write("".join(f"token={t}\n" for t in tokens))


if __name__ == "__main__":
    main()
