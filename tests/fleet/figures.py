"""Propagation figures gathered during the run, written as JSON for the
README and printed as a table at the end of the pytest run."""

import json
import math
import time

# kind -> {"trials", "p50_ms", "p99_ms", "max_ms", "samples_ms"} or {"error"}
RESULTS = {}


def percentile(samples, p):
    """Nearest-rank percentile: a value that was measured, never one
    interpolated between two."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def record(kind, samples, error=None):
    if error is not None:
        RESULTS[kind] = {"trials": len(samples), "error": error}
        return
    ms = [round(s * 1000, 1) for s in samples]
    RESULTS[kind] = {
        "trials": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "samples_ms": ms,
    }


def write(path, setup):
    doc = {
        "what": "seconds from a change's response on replica A to its effect on replica B, "
                "B polled every few ms",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "setup": setup,
        "kinds": RESULTS,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def table():
    lines = [f"{'change':<12} {'trials':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for kind, r in RESULTS.items():
        if "error" in r:
            lines.append(f"{kind:<12} {r['trials']:>6}  {r['error']}")
        else:
            lines.append(f"{kind:<12} {r['trials']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} "
                         f"{r['max_ms']:>8}")
    return "\n".join(lines)
