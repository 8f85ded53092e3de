#!/usr/bin/env python3
"""Turns the raw results of benches/run.sh into the table `make bench` prints
and writes to benches/RESULTS.md.

    python3 benches/report.py RESULTS_DIR OUTPUT.md

RESULTS_DIR holds machine.txt, sign.json, audit.json, one NAME.json (the
WRK_RESULT line of benches/wrk/checked.lua) and NAME.cpu per wrk load,
token-DB-ALG.missing when POST /v1/tokens answered 404, and rss.txt.
Standard library only.
"""

import json
import sys
from pathlib import Path

res = Path(sys.argv[1])
out_path = Path(sys.argv[2])


def load_json(name):
    p = res / name
    return json.loads(p.read_text()) if p.exists() and p.read_text().strip() else None


machine = dict(
    line.split("=", 1) for line in (res / "machine.txt").read_text().splitlines() if "=" in line
)
sign = load_json("sign.json") or {}
audit = load_json("audit.json") or {}
pkcs11_sign = load_json("pkcs11_sign.json") or {}


def wrk(name):
    r = load_json(f"{name}.json")
    if r is not None:
        r["cpu"] = load_json(f"{name}.cpu") or {}
        r["errors"] = r["non200"] + r["bad_body"] + r["socket_errors"]
    return r


def fmt_rate(x):
    return f"{x:,.0f}" if x is not None else "n/a"


def fmt_ms(us):
    return f"{us / 1000:.2f} ms"


def cpu_cell(r):
    c = r.get("cpu") or {}
    if not c:
        return ""
    parts = [f"srv {c['server_cores']:.2f}"]
    if c.get("db_cores", 0) >= 0.01:
        parts.append(f"db {c['db_cores']:.2f}")
    parts.append(f"wrk {c['wrk_cores']:.2f}")
    parts.append(f"other {c['other_cores']:.2f}")
    if c.get("steal_cores", 0) >= 0.01:
        parts.append(f"steal {c['steal_cores']:.2f}")
    return " / ".join(parts)


def cpu_us(r):
    """CPU time the server (plus PostgreSQL) spent per request, µs: unlike
    req/s, hardly moved by other processes competing for the cores."""
    c = r.get("cpu") or {}
    if not c or not r["requests"]:
        return None
    return (c["server_cores"] + c.get("db_cores", 0)) * c["wall_s"] * 1e6 / r["requests"]


def wrk_us(r):
    """CPU time wrk itself spent per request, µs: on shared cores, taken
    from what the server could have used."""
    c = r.get("cpu") or {}
    if not c or not r["requests"]:
        return None
    return c["wrk_cores"] * c["wall_s"] * 1e6 / r["requests"]


def cpu_per_request(r):
    us = cpu_us(r)
    return f"{us:.1f} µs" if us is not None else ""


def checked(r):
    """'0' or the error counts; a load with errors is not a result."""
    if r["errors"] == 0:
        return "0"
    return (
        f"**{r['non200']} non-200, {r['bad_body']} bad body, {r['socket_errors']} socket**"
        f" (first: `{r['first_bad'][:60]}`)"
    )


lines = []
add = lines.append
warnings = []

add("# Benchmark results")
add("")
add("Produced by `make bench` (`bash benches/run.sh`); raw output of the last run is in")
add("`$CARGO_TARGET_DIR/bench-results/`. Every number below comes from the same run.")
add("")
add(f"- Machine: {machine.get('nproc')} cores, {machine.get('cpu')}, {machine.get('mem')} RAM, "
    f"Linux {machine.get('kernel')}")
if machine.get("busy_before"):
    add(f"- Other processes were using {machine['busy_before']} cores just before the run "
        "(a shared machine's neighbours); see the `other` CPU column per load.")
add(f"- Date: {machine.get('date')}; commit {machine.get('commit')}; rustc {machine.get('rustc')}")
add(f"- Load: wrk {machine.get('wrk')}, {machine.get('threads')} threads, "
    f"{machine.get('connections')} connections, {machine.get('duration')} s measured after a "
    f"{machine.get('warmup')} s warm-up, 127.0.0.1, HTTP/1.1 keep-alive. **wrk runs on the same "
    f"{machine.get('nproc')} cores as the server**: every rate is lower than a separate load "
    "machine would show, and both sides of each ratio carry the same handicap.")
add(f"- nginx {machine.get('nginx')} (2 workers, access_log off, sendfile on, keep-alive not cut "
    "by request count); PostgreSQL "
    f"{machine.get('postgres', 'n/a (not started)')}; SQLite in WAL mode with synchronous=FULL "
    "(asapd's setting: one fsync per commit, i.e. per audit batch).")
add("- Every response is checked (status exactly 200, body contains the expected text) by "
    "`benches/wrk/checked.lua`; a row with errors is marked and its ratio is not computed.")
add("- CPU column: average cores used during the measured run by the server (`srv`), PostgreSQL "
    "(`db`), wrk, and everything else on the machine (`other`, e.g. a neighbour's build). "
    "Server CPU per request (server + PostgreSQL CPU time / requests) is the number least moved "
    "by such neighbours; req/s is not.")
add("")

# --- signing -------------------------------------------------------------------
# sign.json from before the all-cores variant has only the one-thread rates:
# then the all-cores row reads n/a and the ceilings fall back to one thread.
n_cores = sign.get("all_cores_threads")
have_all_cores = any(sign.get(f"{alg}_asapd_kept_all_cores") for alg in ("ES256", "RS256"))
add("## 1. Signing in process (`benches/sign.rs`)")
add("")
add("| | ES256 | RS256 (2048) |")
add("|---|---:|---:|")
for key, label in [
    ("asapd_kept_all_cores",
     f"asapd `crypto::JwsSigner`, **all {n_cores or '?'} cores**: {n_cores or 'N'} threads at once, "
     "each with a handle of the same kept key pair (**sign_rate_all**)"),
    ("asapd_kept", "asapd `crypto::JwsSigner`, one thread: aws-lc-rs key pair parsed once and kept "
     "(**sign_rate_1**)"),
    ("jwt_cached", "jsonwebtoken `encode`, one thread, `EncodingKey` built once (it re-parses the "
     "DER per call)"),
    ("jwt_parse_per_call", "jsonwebtoken `encode`, one thread, `EncodingKey::from_*_der` per call"),
]:
    cells = []
    for alg in ("ES256", "RS256"):
        wall, cpu = sign.get(f"{alg}_{key}"), sign.get(f"{alg}_{key}_per_cpu_s")
        cells.append("n/a" if wall is None else
                     f"{fmt_rate(wall)}/s" + (f" ({fmt_rate(cpu)} per CPU-s)" if cpu else ""))
    add(f"| {label} | {cells[0]} | {cells[1]} |")
openssl = {}
if (res / "openssl.txt").exists():
    for line in (res / "openssl.txt").read_text().splitlines():
        f = line.split()
        if line.startswith("rsa 2048 bits") and len(f) >= 7:
            openssl["RS256"] = float(f[5])
        elif "ecdsa (nistp256)" in line and len(f) >= 7:
            openssl["ES256"] = float(f[-2])
if openssl:
    add(f"| reference: `openssl speed` sign (ECDSA P-256 / RSA 2048), one core, same machine, "
        f"same run | {fmt_rate(openssl.get('ES256'))}/s | {fmt_rate(openssl.get('RS256'))}/s |")
add("")
add("Rates per wall-clock second (all cores: summed over the threads, which measure the same "
    "window); in parentheses per second of the measuring threads' own CPU time, i.e. per busy "
    "core (what an uncontended core does; wall and CPU rates differ when neighbours take a core).")
add("")

# --- HTTP ------------------------------------------------------------------------
add("## 2. The release server under load (`asapd serve`, plain HTTP unless marked)")
add("")
add("| load | req/s | p50 | p99 | errors | server CPU per request | CPU (cores) | ratio | target |")
add("|---|---:|---:|---:|---|---:|---|---:|---|")


def row(label, r, ratio="", target=""):
    if r is None:
        add(f"| {label} | n/a | | | | | | {ratio} | {target} |")
        return
    add(f"| {label} | {fmt_rate(r['rps'])} | {fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | "
        f"{checked(r)} | {cpu_per_request(r)} | {cpu_cell(r)} | {ratio} | {target} |")
    if r["errors"]:
        warnings.append(f"{label}: {r['errors']} errors")
    if (r.get("cpu") or {}).get("other_cores", 0) > 0.15:
        warnings.append(f"{label}: other processes used {r['cpu']['other_cores']:.2f} cores during the run")


def ratio(a, b, target):
    if a is None or b is None:
        return "n/a", False
    if a["errors"] or b["errors"]:
        return "invalid (errors)", False
    x = a["rps"] / b["rps"]
    text = f"**{x:.2f}**"
    ca, cb = cpu_us(a), cpu_us(b)
    if ca and cb:
        # The same comparison by CPU per request, which neighbours disturb less.
        text += f" (by CPU/request: {cb / ca:.2f})"
    return text, x >= target


health = {db: wrk(f"healthz-{db}") for db in ("sqlite", "postgres")}
row("`GET /healthz` (SQLite server)", health["sqlite"])
if health["postgres"] is not None:
    row("`GET /healthz` (PostgreSQL server)", health["postgres"])

verdicts = []
for proto in ("http", "https"):
    a, n = wrk(f"keys-asapd-{proto}"), wrk(f"keys-nginx-{proto}")
    text, ok = ratio(a, n, 0.7)
    tag = "" if proto == "http" else " over HTTPS"
    row(f"`GET /v1/keys/{{kid}}` asapd{tag}", a, f"{text} of nginx", "≥ 0.7" if proto == "http" else "")
    row(f"same PEM, nginx static file{tag}", n)
    if proto == "http":
        verdicts.append(("key fetch ≥ 0.7 of nginx", text, ok))

inm = wrk("keys-asapd-inm")
if inm is not None:
    text, _ = ratio(inm, wrk("keys-nginx-http"), 0)
    row("`GET /v1/keys/{kid}` asapd, `If-None-Match` → 304", inm, f"{text} of nginx (200)")


def ceiling_of(healthz_rps, sign_rate):
    return 1 / (1 / healthz_rps + 1 / sign_rate)


ceilings = []
for db, db_label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
    for alg, target in (("ES256", 0.5), ("RS256", 0.8)):
        name = f"token-{db}-{alg}"
        label = f"`POST /v1/tokens` {alg}, {db_label}, audit on"
        tgt = f"≥ {target} of ceiling"
        if (res / f"{name}.missing").exists():
            add(f"| {label} | n/a (endpoint missing) | | | | | | | {tgt} |")
            verdicts.append((f"{alg} issuance on {db_label}", "n/a (endpoint missing)", None))
            continue
        r, h = wrk(name), health[db]
        s1, s_all = sign.get(f"{alg}_asapd_kept"), sign.get(f"{alg}_asapd_kept_all_cores")
        if r is None:
            add(f"| {label} | n/a (not run) | | | | | | | {tgt} |")
            continue
        if h is None or not (s_all or s1) or h["errors"]:
            row(label, r, "n/a", tgt)
            continue
        # The target is judged against the all-cores ceiling: the server
        # signs on every core. The one-thread ceiling is shown for comparison
        # with earlier runs (and is all there is with an old sign.json).
        c_all = ceiling_of(h["rps"], s_all) if s_all else None
        c1 = ceiling_of(h["rps"], s1) if s1 else None
        ceilings.append((alg, db_label, c_all, c1))
        if r["errors"]:
            text, ok = "invalid (errors)", False
        elif c_all:
            x = r["rps"] / c_all
            text, ok = f"**{x:.2f}** of {c_all:,.0f}", x >= target
            if c1:
                text += f" (one-thread ceiling: {r['rps'] / c1:.2f} of {c1:,.0f})"
        else:
            x = r["rps"] / c1
            text, ok = f"**{x:.2f}** of {c1:,.0f} (one-thread ceiling; no all-cores sign rate)", x >= target
        row(label, r, text, tgt)
        verdicts.append((f"{alg} issuance on {db_label}", text, ok))
# The same issuance with the keys in a SoftHSM2 token, next to the software
# keys on the same kind of server (SQLite) in this run.
for alg in ("ES256", "RS256"):
    r = wrk(f"token-pkcs11-{alg}")
    if r is None:
        continue
    raw = pkcs11_sign.get(f"{alg}_pkcs11_raw")
    text, _ = ratio(r, wrk(f"token-sqlite-{alg}"), 0)
    text += " of software keys"
    if raw and not r["errors"]:
        text += f"; {r['rps'] / raw:.2f} of one session's raw C_Sign ({fmt_rate(raw)}/s)"
    row(f"`POST /v1/tokens` {alg}, SQLite, keys in SoftHSM2 (PKCS#11)", r, text)

# Federated authentication (an RS256 token of a trusted issuer, JWKS cached)
# against a secret, both issuing ES256 on the same server minutes apart.
for db, db_label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
    f, t = wrk(f"token-{db}-federated"), wrk(f"token-{db}-ES256")
    if f is None:
        continue
    text, ok = ratio(f, t, 0.7)
    row(f"`POST /v1/tokens` ES256, federated authentication (RS256 issuer token, cached JWKS), "
        f"{db_label}", f, f"{text} of secret", "≥ 0.7 of secret")
    verdicts.append((f"federated authentication ≥ 0.7 of the secret path on {db_label}", text, ok))
# Introspection against its own ceiling, 1/(1/healthz + 1/verify_rate) with
# the same server's /healthz rate and the ES256 verify rate of asapd's kept
# verifier on all cores (benches/sign.rs), both measured right before the
# load (healthz-next-DB, verify-DB.json; runs before 2026-12-02 have only
# the run's first ones); and, as before, against ES256 issuance on the same
# server.
verify_all = sign.get("ES256_verify_kept_all_cores")
verify_cpu = sign.get("ES256_verify_kept_all_cores_per_cpu_s")
wrk_costs, refs = [], []


def preempted(r):
    c = r.get("cpu") or {}
    n = c.get("server_preempted")
    return n / r["requests"] if n is not None and r["requests"] else None


for db, db_label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
    i, t = wrk(f"introspect-{db}"), wrk(f"token-{db}-ES256")
    if i is None:
        continue
    # Each of the ceiling's rates was measured twice: at the start of the
    # run and right before this load. A neighbour, a checkpoint or a slow
    # minute only ever lowers a measured rate, so the ceiling takes the
    # higher of each pair: the lower ratio.
    hs = [r for r in (health[db], wrk(f"healthz-next-{db}")) if r is not None and not r["errors"]]
    h = max(hs, key=lambda r: r["rps"]) if hs else None
    verifies = [d for d in (sign, load_json(f"verify-{db}.json")) if d and d.get("ES256_verify_kept_all_cores")]
    v = max(verifies, key=lambda d: d["ES256_verify_kept_all_cores"]) if verifies else {}
    v_all, v_cpu = v.get("ES256_verify_kept_all_cores"), v.get("ES256_verify_kept_all_cores_per_cpu_s")
    if len(hs) == 2 or len(verifies) == 2:
        refs.append(f"{db_label}: `/healthz` " + " and ".join(f"{fmt_rate(r['rps'])}/s" for r in hs)
                    + ", verify " + " and ".join(f"{fmt_rate(d['ES256_verify_kept_all_cores'])}/s" for d in verifies))
    label = f"`POST /oauth2/introspect` (ES256 token), {db_label}"
    if v_all and h is not None and not h["errors"] and not i["errors"]:
        c = ceiling_of(h["rps"], v_all)
        x = i["rps"] / c
        text, ok = f"**{x:.2f}** of the ceiling, {c:,.0f}", x >= 0.75
        # The same comparison in the server's CPU alone: /healthz's CPU plus
        # one verify's, against an introspection's. What separates it from
        # the ratio above is mostly wrk's own CPU per request (noted below).
        ci, chh = cpu_us(i), cpu_us(h)
        if v_cpu and ci and chh:
            text += f" (by server CPU/request: {(chh + 1e6 / v_cpu) / ci:.2f})"
            cost = (f"{db_label}: {wrk_us(i):.1f} µs per introspection, "
                    f"{wrk_us(h):.1f} µs per `/healthz`")
            pi, ph = preempted(i), preempted(h)
            if pi is not None and ph is not None:
                cost += f"; the server preempted {pi:.2f} times per introspection, {ph:.2f} per `/healthz`"
            wrk_costs.append(cost)
    else:
        text, ok = ("invalid (errors)" if i["errors"] else "n/a"), False
    row(label, i, text, "≥ 0.75 of ceiling")
    verdicts.append((f"introspection ≥ 0.75 of its ceiling on {db_label}", text, ok))
    vs, _ = ratio(i, t, 1.0)
    add(f"| same, against ES256 issuance on this server | | | | | | | {vs} | |")
    d = wrk(f"introspect-distinct-{db}")
    if d is not None and v_all and h is not None and not h["errors"] and not d["errors"]:
        row(f"same, 2,048 distinct tokens in turn (audit rows not folded), {db_label}", d,
            f"{d['rps'] / ceiling_of(h['rps'], v_all):.2f} of the same ceiling")
if verify_all:
    add("")
    add("Introspection's ceiling = 1/(1/healthz_rate + 1/verify_rate): the same server's "
        "`/healthz` rate and the ES256 verify rate of asapd's kept verifier "
        f"(`crypto::jws::JwsVerifier`, split, verify, parse the claims) on all {n_cores} cores "
        "at once (at the run's start: one thread "
        f"{fmt_rate(sign.get('ES256_verify_kept'))}/s; jsonwebtoken `decode`, key re-parsed per "
        f"call, one thread {fmt_rate(sign.get('ES256_verify_jwt'))}/s). Both rates are measured "
        "at the run's start and again right before the introspection load; the ceiling takes "
        "the higher of each pair, since interference only lowers a measured rate"
        + (" (" + "; ".join(refs) + ")." if refs else "."))
    if wrk_costs:
        add("")
        add("wrk's own CPU per request, on the same cores (" + "; ".join(wrk_costs) + "): the "
            "ceiling counts the load generator's cost at `/healthz`'s, so an introspection's "
            "larger request and answer, and the wake-ups of a slower rate, weigh on its ratio "
            "though they are not the server's; the server-CPU ratio leaves them out. Each "
            "preemption is wrk, woken by an answer, taking the core from a server thread "
            "in the middle of a request: an introspection holds its core for a whole verify, "
            "so it is caught far more often than a `/healthz`.")
add("")
if ceilings:
    if have_all_cores:
        add("Ratio = req/s ÷ ceiling, ceiling = 1/(1/healthz_rate + 1/sign_rate) with the same "
            "server's `/healthz` rate and asapd's own signer (key pair kept parsed) from the same "
            f"run. The ratio in bold, and the target, use **sign_rate_all**: the signing rate on all "
            f"{n_cores} cores (table 1, first row), since the server signs on every core. In "
            "parentheses, the same against the ceiling with **sign_rate_1**, the one-thread rate "
            "(table 1, second row), which understates what the cores can sign and so overstates the "
            "ratio; RESULTS.md before 2026-11-25 showed only that one.")
    else:
        add("Ceiling = 1/(1/healthz_rate + 1/sign_rate): the same server's `/healthz` rate and the "
            "**one-thread** rate of asapd's own signer with the key pair kept parsed (this sign.json "
            "has no all-cores rate), which understates what the cores can sign.")
    add("")

if pkcs11_sign:
    add("### Signing in a PKCS#11 token (`benches/pkcs11_sign.rs`, SoftHSM2)")
    add("")
    add("| alg | raw `C_Sign`, one session | asapd's signer, one thread | CPU per signature, raw → asapd | "
        f"asapd's own time per signature | asapd, {pkcs11_sign.get('sessions')} sessions at once |")
    add("|---|---:|---:|---:|---:|---:|")
    for alg in ("ES256", "RS256"):
        g = lambda k: pkcs11_sign.get(f"{alg}_pkcs11_{k}")
        if g("raw") is None:
            continue
        add(f"| {alg} | {fmt_rate(g('raw'))}/s | {fmt_rate(g('asapd'))}/s | "
            f"{g('raw_cpu_us')} → {g('asapd_cpu_us')} µs | **{g('overhead_us')} µs** "
            f"(by wall time: {g('overhead_wall_us')} µs) | {fmt_rate(g('asapd_sessions'))}/s |")
    add("")
    add("asapd's own time per signature: the measuring thread's CPU time per signature through asapd's "
        "signer (the claims' JSON, base64, the digest, the session pool and the key handle cache "
        "around the same `C_Sign`) minus the same for `C_Sign` alone; SoftHSM2 signs in the calling "
        "thread, so both include the token's work. The two run interleaved, five slices each; the "
        "wall-time difference is shown too but moves with the neighbours' load.")
    add("")

# --- the fleet ------------------------------------------------------------------------
fleet_runs = {scope: [r for r in (wrk(f"fleet-tokens-{scope}-{n}") for n in (1, 2)) if r]
              for scope in ("fleet", "replica")}
if fleet_runs["fleet"] and fleet_runs["replica"]:
    add("### Two replicas on one PostgreSQL")
    add("")
    add("`POST /v1/tokens` ES256 on two `asapd serve` processes at once (one wrk each, half the "
        "connections), one caller with `rate_limit` 100,000/s (never reached: the runs measure what "
        "the limit costs, not refusals). Runs alternate fleet, replica, fleet, replica.")
    add("")
    add("| rate limit | run | tokens/s, both replicas | p99 (worse replica) | errors |")
    add("|---|---|---:|---:|---|")
    means = {}
    for scope, label in (("fleet", "fleet-wide (leased slices)"), ("replica", "per replica")):
        for n, r in enumerate(fleet_runs[scope], 1):
            add(f"| {label} | {n} | {fmt_rate(r['rps'])} | {fmt_ms(r['p99_us'])} | {checked(r)} |")
            if r["errors"]:
                warnings.append(f"fleet {scope} run {n}: {r['errors']} errors")
        means[scope] = sum(r["rps"] for r in fleet_runs[scope]) / len(fleet_runs[scope])
    cost = 1 - means["fleet"] / means["replica"]
    errors = any(r["errors"] for runs in fleet_runs.values() for r in runs)
    text = "invalid (errors)" if errors else (
        f"**{cost:.1%}** (means {fmt_rate(means['fleet'])} vs {fmt_rate(means['replica'])} tokens/s)")
    add("")
    add(f"Cost of the fleet-wide limit = 1 − fleet ÷ per-replica: {text}.")
    add("")
    verdicts.append(("fleet-wide rate limit costs ≤ 10 %", text, not errors and cost <= 0.10))

# --- audit -------------------------------------------------------------------------
add("## 3. Audit commits (`benches/audit.rs`, in process, 2 tokio workers)")
add("")
add(f"{audit.get('secs', '?')} s per phase after a 0.5 s warm-up; every acknowledged event is "
    "counted back from the table at the end.")
add("")
add("| database | 1 writer, 1 commit per event | 64 writers, 1 commit per event each | "
    "64 writers, group commit (`Auditor`) | mean batch | commits/s | mean commit | group / single |")
add("|---|---:|---:|---:|---:|---:|---:|---:|")
for db, label in (("sqlite", "SQLite (WAL, synchronous=FULL)"), ("postgres", "PostgreSQL (fsync on)")):
    a = audit.get(db)
    if not a:
        add(f"| {label} | n/a | | | | | | |")
        continue
    def cell(phase):
        rate, errors = a[f"{phase}_per_s"], a[f"{phase}_errors"]
        if errors and not rate:
            return f"**all {errors:,} writes failed**"
        return f"{fmt_rate(rate)}/s" + (f" (**{errors:,} failed**)" if errors else "")

    errs = a["single_errors"] + a["naive_errors"] + a["group_errors"]
    speedup = (f"**{a['group_per_s'] / a['single_per_s']:.1f}×**"
               if a["single_per_s"] and not errs else "n/a")
    batch = (f"{a['group_mean_batch']} | {fmt_rate(a['group_commits_per_s'])} | "
             f"{a['group_mean_commit_ms']} ms" if not a["group_errors"] else "| |")
    add(f"| {label} | {cell('single')} | {cell('naive')} | {cell('group')} | {batch} | {speedup} |")
    if errs:
        warnings.append(f"audit on {db}: {errs:,} failed writes (first error: {a.get('first_error', '?')})")
add("")

# --- RSS -----------------------------------------------------------------------------
add("## 4. asapd memory (VmHWM = peak resident set since start, read after each load)")
add("")
rss_lines = (res / "rss.txt").read_text().split("\n") if (res / "rss.txt").exists() else []
if rss_lines:
    add("| after | peak RSS (VmHWM) | RSS now |")
    add("|---|---:|---:|")
    peak = 0
    for line in rss_lines:
        if not line.strip():
            continue
        label, hwm, cur = line.split()
        peak = max(peak, int(hwm))
        add(f"| {label} | {int(hwm) / 1024:.1f} MiB | {int(cur) / 1024:.1f} MiB |")
    add("")
    add(f"Peak RSS over the whole run: **{peak / 1024:.1f} MiB** (each server process counted separately).")
    add("")

# --- summary ------------------------------------------------------------------------------
add("## Targets")
add("")
for what, text, ok in verdicts:
    mark = "n/a" if ok is None else ("met" if ok else "**missed**")
    add(f"- {what}: {text} — {mark}")
if warnings:
    add("")
    add("Warnings:")
    for w in warnings:
        add(f"- {w}")
add("")

# The stalled-audit-store run is by hand (a minute per database): its last
# recorded result is kept in benches/audit_stall.md and carried over here.
stall = Path(__file__).with_name("audit_stall.md")
if stall.exists():
    lines.append(stall.read_text().rstrip())
    add("")

text = "\n".join(lines)
# Sections measured by other commands (the fleet limiter's writes, `make
# soak`'s section, which benches/soak.py keeps after this line) follow
# this line; a run keeps them.
KEPT = "<!-- measured outside make bench: report.py keeps what follows -->"
if out_path.exists() and KEPT in (old := out_path.read_text()):
    text = text.rstrip("\n") + "\n\n" + old[old.index(KEPT):]
print(text)
out_path.write_text(text)
print(f"\nwritten to {out_path}", file=sys.stderr)
