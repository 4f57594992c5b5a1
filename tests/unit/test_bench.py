"""make bench's reading of wrk and its verdicts on the goals (no lab, no load)."""

from __future__ import annotations

import pytest

from bench import report, wrk
from bench.scale import ScaleResult
from bench.serving import Measure, ServingResults

# wrk 4.1.0's summary of a run where the server answered 404 and some connections timed out.
WRK_OUT = """Running 8s test @ http://127.0.0.1/bench/io
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.04ms   95.12ms   1.20s    70.22%
    Req/Sec    10.60      5.84    20.00     60.00%
  Latency Distribution
     50%  805.50ms
     75%  850.70ms
     90%  903.74ms
     99%    1.15s
  158 requests in 8.00s, 25.50KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:     19.75
Transfer/sec:      3.19KB
"""


def test_wrk_summary_is_read_with_units_and_failures() -> None:
    r = wrk.parse(WRK_OUT)
    assert (r.requests, r.rps) == (158, 19.75)
    assert r.p50_ms == pytest.approx(805.5)
    assert r.p99_ms == pytest.approx(1150.0)  # "1.15s"
    assert (r.non_2xx, r.socket_errors, r.failed) == (7, 5, 12)
    assert wrk.parse(WRK_OUT.replace("805.50ms", "805.50us")).p50_ms == pytest.approx(0.8055)


def test_wrk_without_a_summary_is_an_error_showing_its_output() -> None:
    with pytest.raises(RuntimeError, match="number of connections must be >= threads"):
        wrk.parse("number of connections must be >= threads\n")


def _measure(setup: str, path: str, endpoint: str, workers: int, rps: float, p99: float = 10.0) -> Measure:
    rounds = [wrk.WrkResult(int(rps * 5), rps * f, 5.0, p99 * f, 0, 0) for f in (0.5, 1.0, 1.1)]
    return Measure(setup, path, endpoint, workers, 8, rounds)


def _serving(io4: float, cpu2: float, ping_nginx: float) -> ServingResults:
    s = ServingResults()
    s.measures = [
        _measure("ours", "nginx", "/io", 1, 19.0),
        _measure("ours", "nginx", "/io", 4, io4),
        _measure("ours", "nginx", "/cpu", 1, 30.0),
        _measure("ours", "nginx", "/cpu", 2, cpu2),
        _measure("ours", "nginx", "/ping", 1, ping_nginx, p99=12.5),
        _measure("ours", "direct", "/ping", 1, 1000.0, p99=10.0),
        _measure("ours", "direct keep-alive", "/ping", 1, 180.0, p99=48.0),
    ]
    return s


# apps, resources, commands, evaluation wall s, evaluation CPU s, process wall s
SIZES = [ScaleResult(1, 12, 3, 0.9, 0.6, 1.0), ScaleResult(10, 30, 12, 1.0, 0.7, 1.1),
         ScaleResult(100, 210, 102, 3.4, 1.3, 3.8), ScaleResult(200, 410, 202, 2.8, 2.0, 3.2)]


def test_goals_met_and_missed_are_told_apart() -> None:
    met = {g.what: g for g in report.goals(_serving(io4=74.0, cpu2=56.0, ping_nginx=950.0), SIZES)}
    assert all(g.met for g in met.values()), met
    proxy = met["proxy overhead: /ping through nginx vs straight to the worker (its faster mode)"]
    assert proxy.figure == "0.95×, p99 +2.5 ms"  # against the faster direct mode, on the medians of the rounds

    missed = {g.what: g for g in report.goals(_serving(io4=70.0, cpu2=50.0, ping_nginx=850.0), SIZES)}
    assert missed["I/O endpoint, 4 workers vs 1"].figure == "3.68×"
    assert not missed["I/O endpoint, 4 workers vs 1"].met
    assert not missed["CPU endpoint, 2 workers vs 1 (2 cores)"].met
    assert not missed["proxy overhead: /ping through nginx vs straight to the worker (its faster mode)"].met


def test_program_scale_goals() -> None:
    slow = [*SIZES[:2], ScaleResult(100, 210, 102, 3.3, 3.2, 3.6), ScaleResult(200, 410, 202, 9.1, 9.0, 9.5)]
    verdict = {g.what: g.met for g in report.goals(None, slow)}
    assert verdict == {"program evaluation, 100 apps": False, "program evaluation grows linearly with apps": False}
    # a busy machine's wall time (3.4 s at 100 apps) is not held against the program; its CPU time is what counts
    assert all(g.met for g in report.goals(None, SIZES))


def test_results_page_shows_each_verdict_and_the_baseline_ratios() -> None:
    s = _serving(io4=70.0, cpu2=56.0, ping_nginx=950.0)
    s.measures += [_measure("ours", "nginx", "/io", w, 19.0 * w) for w in (2, 8)]
    s.measures += [_measure("plumberDeploy", "nginx", e, 1, rps) for e, rps in (("/io", 19.0), ("/cpu", 30.0),
                                                                                 ("/ping", 800.0))]
    s.measures.append(_measure("plumberDeploy", "direct", "/ping", 1, 1000.0))
    text = report.markdown(s, SIZES, [], command="make bench", date="2026-01-01", repeats=5)
    assert "| I/O endpoint, 4 workers vs 1 | 3.68× | >= 3.8× | **MISSED** |" in text
    assert "| CPU endpoint, 2 workers vs 1 (2 cores) | 1.87× | >= 1.8× | met |" in text
    assert "| `/io` | 19.0 | 1.00× | 2: 2.00×, 4: 3.68×, 8: 8.00× |" in text  # plumber-hosting ÷ plumberDeploy
    assert "| `/ping` | 800.0 | 1.19× | – |" in text
