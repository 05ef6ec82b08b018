"""How long `physml check` takes as specs grow: it should be linear in the file size.

Three kinds of growth, each at doubling sizes: a long flat sum in one equation, many `let`
lines, and a chain of lets that each use the previous one twice (which would swell to 2^n
terms if anything inlined them; here it is also compiled). Prints one JSON object:

    python benchmarks/check_speed.py            # sizes 1k…8k
    python benchmarks/check_speed.py --quick    # smaller sizes, for a smoke test

For each case and size: the file size in bytes, the best of three check times in seconds,
and microseconds per byte; ``ratio`` is the time of the largest size over the smallest
divided by the size ratio (≈ 1 when linear, ≈ size ratio when quadratic).
"""
from __future__ import annotations

import json
import platform
import sys
import time

import physml
from physml import compile_dynamics, parse_spec

HEAD = "system s\nstate x\nparam a = 1\n"


def flat_sum(n: int) -> str:
    terms = " + ".join(f"{i}*x^{i % 7 + 1}*a" for i in range(1, n + 1))
    return HEAD + f"dynamics:\n    d(x)/dt = {terms}\n"


def many_lets(n: int) -> str:
    lets = "".join(f"let l{i} = {'x' if i == 0 else f'l{i - 1}'} + a*sin(x)\n"
                   for i in range(n))
    return HEAD + lets + f"dynamics:\n    d(x)/dt = l{n - 1}\n"


def let_chain(n: int) -> str:
    lets = "".join(f"let c{i} = {p}*{p} + a*{p}\n" for i, p in
                   ((i, "x" if i == 0 else f"c{i - 1}") for i in range(n)))
    return HEAD + lets + f"dynamics:\n    d(x)/dt = -x + tanh(c{n - 1})\n"


def timed(text: str, compile_too: bool) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        spec = parse_spec(text, "bench.phy")
        if compile_too:
            compile_dynamics(spec)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    sizes = [250, 500, 1000] if "--quick" in sys.argv else [1000, 2000, 4000, 8000]
    parse_spec(HEAD + "dynamics:\n    d(x)/dt = x\n")        # load the grammar once
    out = {"physml": physml.__version__, "python": platform.python_version(), "cases": {}}
    for name, make, compile_too in [("flat_sum_terms", flat_sum, False),
                                    ("let_lines", many_lets, False),
                                    ("let_chain_check_and_compile", let_chain, True)]:
        rows = []
        for n in sizes:
            text = make(n)
            seconds = timed(text, compile_too)
            rows.append({"n": n, "bytes": len(text.encode()), "seconds": round(seconds, 4),
                         "us_per_byte": round(1e6 * seconds / len(text.encode()), 3)})
        first, last = rows[0], rows[-1]
        ratio = (last["seconds"] / first["seconds"]) / (last["bytes"] / first["bytes"])
        out["cases"][name] = {"rows": rows, "ratio": round(ratio, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
