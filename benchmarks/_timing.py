"""Small timing helpers shared by the benchmarks (wall clock, median of repeats)."""
import statistics
import time


def median_ms(fn, repeat=15, warmup=2):
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def table(rows, headers):
    """Render rows (lists) as a fixed-width text table (also valid Markdown)."""
    cols = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in cols[1:]])


def interleaved_ms(fns, repeat=15, warmup=2, stat="median", cpu=False):
    """Wall time in ms of each callable in ``fns`` (name -> fn), run in rotation (one call of each
    per round), so that a machine shared with other work slows them alike; ``stat``: "median" or
    "min". Returns name -> ms; with ``cpu=True`` also name -> process CPU ms (all threads of this
    process, a CPU driver's workers included: less sensitive than wall time to other processes)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    cpus = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
            cpus[name].append((time.process_time() - c0) * 1e3)
    pick = statistics.median if stat == "median" else min
    wall = {name: pick(t) for name, t in times.items()}
    return (wall, {name: pick(t) for name, t in cpus.items()}) if cpu else wall


# ----------------------------------------------------------------------------- command line of every bench
def bench_args(doc, argv=None, quick_help="fewer repeats / smaller CPU sizes (each bench well under a minute)"):
    """The flags every ``bench_*.py`` takes: ``--quick`` and ``--out DIR``."""
    import argparse
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", metavar="DIR", help="also write the printed output to DIR/<bench name>.md")
    return ap.parse_args(argv)


class Report:
    """``with Report(args.out, "bench_add"):`` copies everything printed to stdout inside the block to
    ``DIR/bench_add.md`` (a fenced block under a heading with the command and the date), creating DIR.
    Without ``out`` it does nothing. If the block raises, what was printed is written with the error."""

    def __init__(self, out, name):
        self.out, self.name = out, name
        self._buf, self._stdout = None, None

    def __enter__(self):
        if self.out:
            import io
            import sys
            self._stdout, self._buf = sys.stdout, io.StringIO()
            outer, buf = self._stdout, self._buf

            class _Tee:
                def write(self, s):
                    buf.write(s)
                    return outer.write(s)

                def flush(self):
                    outer.flush()

                def __getattr__(self, name):
                    return getattr(outer, name)

            sys.stdout = _Tee()
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.out:
            return False
        import datetime
        import os
        import sys
        sys.stdout = self._stdout
        text = self._buf.getvalue().rstrip("\n")
        if exc_type is not None and not issubclass(exc_type, SystemExit):
            text += f"\n\nFAILED: {exc_type.__name__}: {exc}"
        os.makedirs(self.out, exist_ok=True)
        cmd = " ".join([os.path.basename(sys.executable), *sys.argv])
        when = datetime.datetime.now().isoformat(timespec="seconds")
        path = os.path.join(self.out, f"{self.name}.md")
        with open(path, "w") as f:
            f.write(f"# {self.name}\n\n`{cmd}` ({when})\n\n```\n{text}\n```\n")
        print(f"(written to {path})", file=sys.stderr)
        return False
