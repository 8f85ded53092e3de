"""The figures and verdicts of `make soak` (benches/soak.py), and the section
of benches/RESULTS.md they go to."""

import collections
import datetime
import math
import os
import subprocess
from pathlib import Path

BEGIN = "<!-- soak: written by `make soak` (benches/soak.py); `make bench` keeps it -->"
END = "<!-- /soak -->"

# RSS is flat when the fitted line rises by less than this over the
# measured window (after the warm-up): the larger of the two.
RSS_FLAT_KIB, RSS_FLAT_SHARE = 2048, 0.05
# Steady latency: last minute against the first.
P50_STEADY, P99_STEADY = 1.5, 2.0


def percentile(values, q):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    return s[max(1, math.ceil(q / 100 * len(s))) - 1]


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def warmup_of(duration):
    """The first minute, or a third of a shorter run."""
    return min(60.0, duration / 3)


def write_section(path: Path, text):
    """Puts the soak section at the end of path, replacing an earlier one."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        old = head.rstrip("\n") + rest.split(END, 1)[1]
    path.write_text(old.rstrip("\n") + f"\n\n{BEGIN}\n{text.strip()}\n{END}\n")


class Report:
    def __init__(self, soak, duration, rate, unaudited, alive, load):
        self.rows = soak.record.rows
        self.errors = soak.record.errors
        self.received = len(soak.record.received)
        self.rss = soak.rss
        self.bin = os.path.relpath(soak.bin, Path(__file__).resolve().parents[1])
        self.duration, self.rate = duration, rate
        self.unaudited, self.alive, self.load = unaudited, alive, load
        self.warmup = warmup_of(duration)
        self.checks = []
        self.evaluate()

    # --- figures ---------------------------------------------------------------

    def by_op(self):
        ops = collections.defaultdict(list)
        for _, op, status, ms in self.rows:
            ops[op].append((status, ms))
        return ops

    def minute(self, first):
        """Latencies of the first or the last whole minute of the run."""
        end = max(t for t, *_ in self.rows)
        lo, hi = (0, 60) if first else (end - 60, end + 1)
        return [ms for t, _, status, ms in self.rows if lo <= t < hi and status]

    def rss_figures(self, name):
        pts = [(t, kib) for t, kib in self.rss[name] if t >= self.warmup]
        per_min = slope([(t / 60, kib) for t, kib in pts]) if len(pts) > 1 else 0.0
        window = (pts[-1][0] - pts[0][0]) / 60 if len(pts) > 1 else 0.0
        mean = sum(k for _, k in pts) / len(pts) if pts else 0.0
        return {
            "samples": len(pts),
            "first_kib": pts[0][1] if pts else None,
            "last_kib": pts[-1][1] if pts else None,
            "peak_kib": max(k for _, k in self.rss[name]) if self.rss[name] else None,
            "slope_kib_per_min": per_min,
            "rise_over_window_kib": per_min * window,
            "mean_kib": mean,
        }

    # --- verdicts ----------------------------------------------------------------

    def check(self, what, ok, text):
        self.checks.append((what, ok, text))

    def evaluate(self):
        five = sum(1 for _, _, s, _ in self.rows if s >= 500)
        lost = sum(1 for _, _, s, _ in self.rows if s == 0)
        self.check("no 5xx", five == 0 and lost == 0,
                   f"{five} answers 5xx, {lost} requests without an answer, of {len(self.rows):,}")
        self.check("no token without its audit record", self.unaudited == 0,
                   f"{self.unaudited} of {self.received:,} tokens received have no "
                   "`token.issued` record")
        self.check("both replicas alive at the end", self.alive, "")
        for name in ("a", "b"):
            f = self.rss_figures(name)
            limit = max(RSS_FLAT_KIB, RSS_FLAT_SHARE * f["mean_kib"])
            self.check(f"RSS of replica {name.upper()} flat after the warm-up",
                       f["samples"] > 1 and f["rise_over_window_kib"] <= limit,
                       f"slope {f['slope_kib_per_min']:+.0f} KiB/min "
                       f"({f['slope_kib_per_min'] * 60 / 1024:+.1f} MiB/h), fitted rise "
                       f"{f['rise_over_window_kib']:+.0f} KiB (limit {limit:.0f} KiB)")
        first, last = self.minute(True), self.minute(False)
        p = {k: percentile(v, q) for k, v, q in
             [("p50_first", first, 50), ("p99_first", first, 99),
              ("p50_last", last, 50), ("p99_last", last, 99)]}
        self.latency = p
        self.check("p50 steady (last minute ≤ 1.5× first)", p["p50_last"] <= P50_STEADY * p["p50_first"],
                   f"{p['p50_first']:.1f} → {p['p50_last']:.1f} ms "
                   f"({p['p50_last'] / p['p50_first']:.2f}×)")
        self.check("p99 steady (last minute ≤ 2× first)", p["p99_last"] <= P99_STEADY * p["p99_first"],
                   f"{p['p99_first']:.1f} → {p['p99_last']:.1f} ms "
                   f"({p['p99_last'] / p['p99_first']:.2f}×)")

    def passed(self):
        return all(ok for _, ok, _ in self.checks)

    # --- output ------------------------------------------------------------------

    def markdown(self):
        lines = []
        add = lines.append
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        add("## Soak (`make soak`)")
        add("")
        add(f"- {date}, commit {commit}, `{self.bin}`; {os.cpu_count()} cores; "
            f"DURATION {self.duration:.0f} s, warm-up {self.warmup:.0f} s; "
            f"offered {self.rate:.0f} req/s, achieved {len(self.rows) / self.duration:.0f} req/s.")
        add(f"- Load average (1 min) {self.load[0][0]:.2f} before, {self.load[1][0]:.2f} after: "
            "the load generator, nginx, PostgreSQL and both replicas share these cores "
            "with whatever else runs.")
        add("- Topology of `make fleet`: PostgreSQL 15 (fsync off), replicas A and B, nginx "
            "over TLS; traffic through nginx.")
        add("")
        add("| check | result | |")
        add("|---|---|---|")
        for what, ok, text in self.checks:
            add(f"| {what} | {'met' if ok else '**missed**'} | {text} |")
        add("")
        add("| operation | requests | p50 | p99 | statuses |")
        add("|---|---:|---:|---:|---|")
        for op, rows in sorted(self.by_op().items()):
            answered = [ms for s, ms in rows if s]
            statuses = collections.Counter(s for s, _ in rows)
            st = ", ".join(f"{s or 'none'}: {n:,}" for s, n in sorted(statuses.items()))
            p50 = f"{percentile(answered, 50):.1f} ms" if answered else "-"
            p99 = f"{percentile(answered, 99):.1f} ms" if answered else "-"
            add(f"| {op} | {len(rows):,} | {p50} | {p99} | {st} |")
        add("")
        add("| replica | RSS after warm-up | at the end | peak | slope |")
        add("|---|---:|---:|---:|---:|")
        for name in ("a", "b"):
            f = self.rss_figures(name)
            if f["samples"]:
                add(f"| {name.upper()} | {f['first_kib'] / 1024:.1f} MiB | "
                    f"{f['last_kib'] / 1024:.1f} MiB | {f['peak_kib'] / 1024:.1f} MiB | "
                    f"{f['slope_kib_per_min']:+.0f} KiB/min |")
        if self.errors:
            add("")
            add("Harness notes: " + "; ".join(f"{k} ×{v}" for k, v in self.errors.items()))
        return "\n".join(lines)

    def as_json(self):
        return {
            "duration_s": self.duration, "rate": self.rate, "requests": len(self.rows),
            "checks": [{"what": w, "ok": ok, "text": t} for w, ok, t in self.checks],
            "latency_ms": self.latency,
            "rss": {n: self.rss_figures(n) for n in ("a", "b")},
            "rss_samples": self.rss, "errors": dict(self.errors),
        }
