"""Load-time checks of the strategy loader: the trial run of `decide` (bounds-checked) and BARS.

Each mistake below would have been a wrong decision on every bar close, read from memory past
an array; the loader must name its file and line instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trader.kernels import ring
from trader.signals.loader import LoadedStrategy, load_strategy
from trader.signals.runner import StrategyRunner
from trader.types import Action

TEMPLATE = '''\
from trader.strategy import CLOSE, ENTER_LONG, EXIT, HOLD, NAN, Param, columns, njit, sma
from trader.strategy import param_index

INTERVAL = "1m"
BARS = 3
PARAMS = {"period": Param(5, low=2, high=50), "margin": Param(0.0, low=0.0, high=1.0)}
P = param_index(PARAMS)


def indicators(p):
    return {"sma": sma(p[P.period])}


C = columns(indicators, PARAMS)


@njit(cache=True)
def above(now, bars):
    return bars[-1, CLOSE] > now[C.sma]


@njit(cache=True)
def decide(now, prev, bars, p):
    first, last = bars[0, CLOSE], bars[-1, CLOSE]
    if above(now, bars) and last - first > p[P.margin]:
        return 0.5, ENTER_LONG, first, last
    if last < first:
        return -0.5, EXIT, NAN, NAN
    return 0.0, HOLD, NAN, NAN
'''


def load(tmp_path: Path, text: str, name: str = "trial") -> tuple[Path, object]:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path, load_strategy(path, name)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def error_of(tmp_path: Path, text: str, name: str = "trial") -> tuple[str, str]:
    path, result = load(tmp_path, text, name)
    assert isinstance(result, list) and len(result) == 1, result
    where, reason = result[0]
    assert where.startswith(f"{path}:"), where
    return where.removeprefix(f"{path}:"), reason


def test_the_template_loads_with_its_bars_and_a_warmup_covering_them(tmp_path):
    _, loaded = load(tmp_path, TEMPLATE)
    assert isinstance(loaded, LoadedStrategy)
    assert (loaded.bars, loaded.warmup_bars) == (3, 6)  # sma(5): lookback 4, + 2
    _, loaded = load(tmp_path, TEMPLATE.replace("BARS = 3", "BARS = 40"), "long")
    assert isinstance(loaded, LoadedStrategy) and loaded.warmup_bars == 40


def test_decide_gets_the_last_bars_oldest_first(tmp_path):
    _, loaded = load(tmp_path, TEMPLATE)
    assert isinstance(loaded, LoadedStrategy)
    runner = StrategyRunner({"trial": loaded}, emit_holds=True)
    window = ring.new_window(1, 20)
    closes = [10.0, 11, 12, 13, 14, 15, 16, 17]
    for t, close in enumerate(closes):
        row = np.array([[60.0 * t, close, close, close, close, 1.0]])
        ring.push_all(window.buf, window.head, window.count, row)
        signals = runner.on_bar_close(60, 60 * t, window, {"X-USD": 0})
    [signal] = signals
    assert signal.action == Action.ENTER_LONG
    assert (signal.stop, signal.take_profit) == (15.0, 17.0)  # bars[0] and bars[-1]


def test_a_column_index_past_the_indicators_is_a_load_error(tmp_path):
    text = TEMPLATE.replace("bars[-1, CLOSE] > now[C.sma]", "bars[-1, CLOSE] > now[1]")
    line, reason = error_of(tmp_path, text)
    assert line == str(line_of(text, "now[1]"))  # in the helper decide calls
    assert reason.startswith("IndexError: index 1 is out of bounds for axis 0 with size 1")
    assert "now/prev have 1 columns, bars 3 rows (BARS), p 2 params" in reason


def test_a_param_index_past_the_params_is_a_load_error(tmp_path):
    text = TEMPLATE.replace("last - first > p[P.margin]", "last - first > p[2]")
    line, reason = error_of(tmp_path, text)
    assert line == str(line_of(text, "p[2]"))
    assert reason.startswith("IndexError: index 2 is out of bounds for axis 0 with size 2")


def test_a_bar_index_past_bars_is_a_load_error(tmp_path):
    text = TEMPLATE.replace("bars[0, CLOSE], bars[-1, CLOSE]", "bars[-4, CLOSE], bars[-1, CLOSE]")
    line, reason = error_of(tmp_path, text)
    assert line == str(line_of(text, "bars[-4, CLOSE]"))
    assert reason.startswith("IndexError: index -4 is out of bounds for axis 0 with size 3")
    text = TEMPLATE.replace("bars[-1, CLOSE] > now[C.sma]", "bars[-1, 6] > now[C.sma]")
    line, reason = error_of(tmp_path, text, "field")
    assert line == str(line_of(text, "bars[-1, 6]"))
    assert reason.startswith("IndexError: index 6 is out of bounds for axis 1 with size 6")


def test_the_default_is_one_bar(tmp_path):
    _, loaded = load(tmp_path, TEMPLATE.replace("BARS = 3\n", ""))
    assert isinstance(loaded, LoadedStrategy) and loaded.bars == 1  # bars[0] is bars[-1]
    text = TEMPLATE.replace("BARS = 3\n", "").replace("bars[0, CLOSE]", "bars[-2, CLOSE]")
    line, reason = error_of(tmp_path, text, "one")
    assert line == str(line_of(text, "bars[-2, CLOSE]"))
    assert reason.startswith("IndexError: index -2 is out of bounds for axis 0 with size 1")
    assert "bars 1 row (BARS)" in reason


def test_an_out_of_range_index_is_caught_again_from_numbas_cache(tmp_path):
    text = TEMPLATE.replace("last - first > p[P.margin]", "last - first > p[2]")
    path, first = load(tmp_path, text)
    assert list((tmp_path / "__pycache__").glob("trial.decide.boundscheck-*.nbi"))
    assert load_strategy(path, "trial") == first  # the checked copy loaded from the cache


def with_tie_rule(text: str) -> str:
    """TEMPLATE entering on a tie-aware cross of the close over its SMA."""
    return text.replace("from trader.strategy import param_index",
                        "from trader.strategy import crossed_above, param_index").replace(
        "if above(now, bars) and",
        "if crossed_above(bars[-2, CLOSE], prev[C.sma], last, now[C.sma], last) and")


def test_the_tie_helpers_pass_the_trial_run_and_an_index_in_their_arguments_is_caught(
        tmp_path):
    _, loaded = load(tmp_path, with_tie_rule(TEMPLATE), "tied")
    assert isinstance(loaded, LoadedStrategy)  # helpers copied, bounds-checked, run
    text = with_tie_rule(TEMPLATE).replace("prev[C.sma], last", "prev[1], last")
    line, reason = error_of(tmp_path, text, "tied_wrong")
    assert line == str(line_of(text, "prev[1], last"))
    assert reason.startswith("IndexError: index 1 is out of bounds for axis 0 with size 1")


def test_a_wrong_return_type_is_a_load_error(tmp_path):
    text = TEMPLATE.replace("return 0.5, ENTER_LONG, first, last", "return 0.5, 1.0, first, last")
    line, reason = error_of(tmp_path, text)  # one float action makes every action a float
    assert line == str(line_of(text, "def decide"))
    assert reason == ("decide must return (float score, int action, float stop, float "
                      "take_profit), returns UniTuple(float64 x 4)")


def test_bars_must_be_a_positive_whole_number(tmp_path):
    for value in ("0", "2.5", "True", "10001"):
        text = TEMPLATE.replace("BARS = 3", f"BARS = {value}")
        line, reason = error_of(tmp_path, text, f"bars_{value.replace('.', '_')}")
        assert line == str(line_of(text, "BARS ="))
        assert reason == f"BARS must be a whole number in [1, 10000], got {value}"


def test_decide_must_be_compiled(tmp_path):
    text = TEMPLATE.replace("@njit(cache=True)\ndef decide", "def decide")
    line, reason = error_of(tmp_path, text)
    assert line == str(line_of(text, "def decide"))
    assert reason == "decide must be compiled: decorate it with @njit (from trader.strategy)"


def test_decide_writes_into_a_copy_of_the_bars_never_the_window(tmp_path):
    text = TEMPLATE.replace("    first, last = bars[0, CLOSE], bars[-1, CLOSE]\n",
                            "    first, last = bars[0, CLOSE], bars[-1, CLOSE]\n"
                            "    bars[-1, CLOSE] = -1.0\n")
    _, loaded = load(tmp_path, text)
    assert isinstance(loaded, LoadedStrategy)
    runner = StrategyRunner({"trial": loaded}, emit_holds=True)
    window = ring.new_window(1, 20)
    for t in range(10):
        ring.push_all(window.buf, window.head, window.count, np.full((1, ring.FIELDS), 5.0))
        runner.on_bar_close(60, 60 * t, window, {"X-USD": 0})
    assert (window.buf[0, :, ring.CLOSE][~np.isnan(window.buf[0, :, ring.CLOSE])] == 5.0).all()


README = Path(__file__).resolve().parents[2] / "strategies" / "README.md"


def readme_example() -> str:
    """The worked example of strategies/README.md: the python block after its heading."""
    text = README.read_text().split("## A worked example", 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_loads_enters_and_exits(tmp_path):
    _, loaded = load(tmp_path, readme_example(), "breakout")
    assert isinstance(loaded, LoadedStrategy)
    assert (loaded.bars, loaded.warmup_bars) == (21, 51)  # as the walk-through says
    runner = StrategyRunner({"breakout": loaded})  # on its INTERVAL, 5m
    window = ring.new_window(1, 200)
    closes = np.concatenate([np.linspace(100.0, 90.0, 60), np.linspace(90.0, 120.0, 60),
                             np.linspace(120.0, 100.0, 40)])
    actions = []
    for t, close in enumerate(closes):
        row = np.array([[300.0 * t, close, close * 1.001, close * 0.999, close, 1.0]])
        ring.push_all(window.buf, window.head, window.count, row)
        actions += [(s.action, s.stop) for s in runner.on_bar_close(300, 300 * t, window,
                                                                   {"X-USD": 0})]
    assert {a for a, _ in actions} == {Action.ENTER_LONG, Action.EXIT}
    assert all(stop is not None for a, stop in actions if a == Action.ENTER_LONG)


def test_the_readme_examples_mistake_is_reported_as_it_says(tmp_path):
    text = readme_example().replace("bars[:-1, HIGH].max()", "bars[-22, HIGH]")
    line, reason = error_of(tmp_path, text, "breakout")
    assert line == str(line_of(text, "bars[-22, HIGH]"))
    assert reason.startswith("IndexError: index -22 is out of bounds for axis 0 with size 21")
    assert reason.endswith("(trial run of decide: now/prev have 2 columns, bars 21 rows (BARS), "
                           "p 3 params)")
