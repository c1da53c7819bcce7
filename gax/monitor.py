"""Failure tracking over the stream of logged training metrics (host side, plain Python).

The trainer logs a dict of float metrics every `log_every` steps (`d_loss`, `g_loss`,
`d_real_logit`, `d_fake_logit`, `d_grad_norm`, `g_grad_norm`, `d_penalty_*`). A `Monitor`
reads that stream and raises an `Alarm` when it sees the signature of a known GAN failure:

  non_finite                   a metric is NaN or Inf: training diverged.
  diverged                     training diverged while staying finite: a mean D logit
                               beyond +-`logit_max`, or every logged gradient norm exactly 0
                               for `zero_grad_patience` consecutive logs (saturated sigmoids,
                               dead ReLUs: no player learns any more).
  exploding_gradients          `d_grad_norm` or `g_grad_norm` above `grad_norm_max`.
  d_loss_collapse              `d_loss` below `d_loss_floor` for `d_loss_patience`
                               consecutive logs: D wins completely and G's gradient vanishes
                               ("D loss goes to 0: failure mode", ganhacks tip 10).
  g_loss_rising_while_d_wins   G loss rises steadily over the last `g_trend_window` logs while
                               D wins at each of them: D is overpowering G. This is the
                               classic signature of the D-wins failure and usually comes
                               before `d_loss_collapse`.
  g_loss_falling_while_d_wins  G loss falls steadily over the window while D wins at each log:
                               the wording of the monitor's issue. ganhacks tip 10 says "if
                               the loss of the generator steadily decreases, then it's fooling
                               D with garbage"; with D still winning this can also be G
                               recovering, so it is a warning to look at the samples rather
                               than a diagnosis.
  mode_collapse                an evaluation found fewer than `mode_collapse_fraction` of the
                               data's modes covered (`modes_covered` of `modes`: the 2D
                               mixtures and stacked digits; `Monitor.evaluation`).

"Steadily" means a least-squares line through the window's G losses explains at least
`g_trend_min_r2` of their variance and changes by at least `g_trend_min_change` over the
window. "D wins" at a log means `d_loss < d_wins_loss`, or the mean real logit exceeds the
mean fake logit by more than `d_wins_logit_gap`. `d_wins_loss=0` (the default) stands for a
quarter of the run's D loss at equilibrium (`D_LOSS_AT_EQUILIBRIUM`): 2 ln 2
for the minimax, non-saturating and relativistic average losses, 2 for hinge and the
relativistic average hinge and least-squares losses, 0.25 for least squares. The D-based
kinds (the last three) are checked only for those losses, whose D loss is >= 0 with 0 for a
perfect D, and for `loss=None` (scale unknown: only the logit gap judges D winning). The
Wasserstein critic loss and logits have no fixed scale and a critic that separates real from
fake is its normal state, so for it, as for any other loss name, they are not checked.

Each alarm is raised once per episode: a kind fires when its condition starts to hold and
re-arms once the condition has not held for one log, or for `g_trend_window` consecutive
logs for the two trend kinds (their window must refresh, so a trend that flickers around
the thresholds during one stretch of D winning is one episode). `Monitor.check(alarms)`
raises `MonitorStop` when an alarm's kind is in `stop_on`.

Usage (the trainer's config gets a `monitor` section):

  monitor = Monitor.from_config(config.get("monitor", {}), loss=config.loss)
  alarms = monitor.update(step, metrics)   # at every logged step
  alarms = monitor.evaluation(step, result)  # at every evaluation (mode_collapse)
  monitor.check(alarms)                    # raises MonitorStop for a kind in stop_on
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import math
from typing import Any, Deque, Dict, FrozenSet, List, Mapping, Optional, Sequence

import numpy as np

NON_FINITE = "non_finite"
DIVERGED = "diverged"
EXPLODING_GRADIENTS = "exploding_gradients"
D_LOSS_COLLAPSE = "d_loss_collapse"
G_LOSS_RISING_WHILE_D_WINS = "g_loss_rising_while_d_wins"
G_LOSS_FALLING_WHILE_D_WINS = "g_loss_falling_while_d_wins"
MODE_COLLAPSE = "mode_collapse"
KINDS = (NON_FINITE, DIVERGED, EXPLODING_GRADIENTS, D_LOSS_COLLAPSE, G_LOSS_RISING_WHILE_D_WINS,
         G_LOSS_FALLING_WHILE_D_WINS, MODE_COLLAPSE)
_D_KINDS = frozenset({D_LOSS_COLLAPSE, G_LOSS_RISING_WHILE_D_WINS, G_LOSS_FALLING_WHILE_D_WINS})

GRAD_NORM_KEYS = ("d_grad_norm", "g_grad_norm")
LOGIT_KEYS = ("d_real_logit", "d_fake_logit")

# D's loss at equilibrium: the best D can do when fakes are distributed as reals (for the
# losses here: every logit equal, D(x) = 1/2). Each of these D losses is >= 0, and 0 only
# for a D that separates real from fake.
D_LOSS_AT_EQUILIBRIUM = {
    "minimax": 2.0 * math.log(2.0),
    "non_saturating": 2.0 * math.log(2.0),
    "hinge": 2.0,
    "least_squares": 0.25,
    "relativistic_average": 2.0 * math.log(2.0),
    "relativistic_average_hinge": 2.0,
    "relativistic_average_least_squares": 2.0,
}

_TRY_AGAINST_STRONG_D = ("try one-sided label smoothing or instance noise, a smaller D learning "
                         "rate or fewer D steps, or an R1/gradient penalty on D")


def monitor_config_defaults() -> Dict[str, Any]:
  """The monitor's options with their defaults, as a plain dict (a config's `monitor` section).

  Keys:
    watch: the failure kinds to check (default: all of `KINDS`).
    stop_on: the kinds that stop training (`Monitor.check` raises `MonitorStop`); a subset of
      `watch`. Default: those of `non_finite` and `diverged` that are watched, the two a run
      cannot recover from (NaN stays NaN; with every gradient exactly 0 no parameter moves
      again, and a D whose logits are beyond 1e6 saturates every sigmoid loss, so its
      gradients vanish in float32). The
      others are warnings: D winning or a trend in G's loss can pass, and stopping on them
      would end runs that recover.
    logit_max: `diverged` fires when the mean real or fake D logit is beyond +-this.
    zero_grad_patience: ... or when every logged gradient norm is exactly 0 for this many
      consecutive logs.
    grad_norm_max: `exploding_gradients` fires when a gradient norm exceeds this.
    d_loss_floor: `d_loss_collapse` counts a log whose D loss is below this ...
    d_loss_patience: ... and fires after this many consecutive such logs.
    d_wins_loss: D wins at a log when its loss is below this; 0: a quarter of the loss's
      equilibrium value (`D_LOSS_AT_EQUILIBRIUM`), or unused for an unknown loss.
    d_wins_logit_gap: D also wins when `d_real_logit - d_fake_logit` exceeds this.
    g_trend_window: number of logs the G loss trend is fitted over (>= 3).
    g_trend_min_r2: the trend is steady when the line explains at least this fraction of the
      window's variance (in [0, 1]).
    g_trend_min_change: ... and changes G's loss by at least this over the window.
    mode_collapse_fraction: `mode_collapse` fires when an evaluation covers fewer than this
      fraction of the modes (in (0, 1]).
  """
  return {
      "watch": KINDS,
      "stop_on": (NON_FINITE, DIVERGED),
      "logit_max": 1e6,
      "zero_grad_patience": 3,
      "grad_norm_max": 100.0,
      "d_loss_floor": 1e-3,
      "d_loss_patience": 5,
      "d_wins_loss": 0.0,
      "d_wins_logit_gap": 4.0,
      "g_trend_window": 10,
      "g_trend_min_r2": 0.6,
      "g_trend_min_change": 0.1,
      "mode_collapse_fraction": 0.5,
  }


@dataclasses.dataclass(frozen=True)
class Alarm:
  """A detected failure.

  Attributes:
    kind: one of `KINDS`.
    step: the training step of the log that raised it.
    message: what the signature means and what to try.
    values: the metrics behind the alarm, for the record.
  """

  kind: str
  step: int
  message: str
  values: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> Dict[str, Any]:
    """A JSON-serialisable dict (non-finite values become the strings 'nan', 'inf', '-inf')."""
    values = {k: v if math.isfinite(v) else str(v) for k, v in self.values.items()}
    return {"step": self.step, "kind": self.kind, "message": self.message, "values": values}

  def __str__(self) -> str:
    return f"[{self.kind}] step {self.step}: {self.message}"


class MonitorStop(RuntimeError):
  """Training stopped by the monitor: an alarm's kind is in `stop_on`."""

  def __init__(self, alarms: Sequence[Alarm]):
    self.alarms = tuple(alarms)
    super().__init__("Training stopped by the monitor (config.monitor.stop_on): " +
                     "; ".join(str(a) for a in self.alarms))


def _as_plain_dict(config: Any) -> Dict[str, Any]:
  if config is None:
    return {}
  if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
    return config.to_dict()
  if not isinstance(config, Mapping):
    raise TypeError(f"The monitor config must be a mapping, got {type(config).__name__}.")
  return dict(config)


def _kinds(name: str, value: Any) -> FrozenSet[str]:
  if isinstance(value, str):  # "a,b" from a command line
    value = [v.strip() for v in value.split(",") if v.strip()]
  if not isinstance(value, (list, tuple, set, frozenset)):
    raise ValueError(f"monitor.{name} must be a list of failure kinds, got {value!r}.")
  unknown = sorted(set(value) - set(KINDS))
  if unknown:
    raise ValueError(f"monitor.{name} has unknown failure kinds {unknown}; known: {list(KINDS)}.")
  return frozenset(value)


def _number(cfg: Mapping[str, Any], name: str, low: float, high: float = math.inf,
            low_inclusive: bool = False, integer: bool = False) -> Any:
  value = cfg[name]
  ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
  if isinstance(value, bool) or not ok_type:
    raise ValueError(f"monitor.{name} must be {'an integer' if integer else 'a number'}, "
                     f"got {value!r}.")
  above = value >= low if low_inclusive else value > low
  if not (above and value <= high and math.isfinite(value)):
    bounds = f"{'>=' if low_inclusive else '>'} {low:g}" + (
        f" and <= {high:g}" if math.isfinite(high) else "")
    raise ValueError(f"monitor.{name} must be {bounds}, got {value!r}.")
  return value if integer else float(value)


def _slope_and_r2(y: Sequence[float]) -> tuple[float, float]:
  """Least-squares slope per log of `y` against 0, 1, ..., and the line's R^2."""
  y = np.asarray(y, np.float64)
  x = np.arange(len(y), dtype=np.float64)
  x -= x.mean()
  dy = y - y.mean()
  slope = float(x @ dy / (x @ x))
  ss_tot = float(dy @ dy)
  r2 = 1.0 if ss_tot == 0.0 else float(slope ** 2 * (x @ x) / ss_tot)
  return slope, r2


class Monitor:
  """Watches the logged metrics of one run for GAN failure signatures (see the module doc).

  Build it with `Monitor.from_config`; call `update(step, metrics)` with every logged
  metrics dict, in step order, and `check(alarms)` to stop on the kinds in `stop_on`.
  """

  def __init__(self, watch: Sequence[str] = KINDS,
               stop_on: Sequence[str] = (NON_FINITE, DIVERGED), logit_max: float = 1e6,
               zero_grad_patience: int = 3, grad_norm_max: float = 100.0,
               d_loss_floor: float = 1e-3, d_loss_patience: int = 5, d_wins_loss: float = 0.0,
               d_wins_logit_gap: float = 4.0, g_trend_window: int = 10,
               g_trend_min_r2: float = 0.6, g_trend_min_change: float = 0.1,
               mode_collapse_fraction: float = 0.5, loss: Optional[str] = None):
    """Validates the options (as in `monitor_config_defaults`); `loss` is the run's loss name."""
    cfg = dict(watch=watch, stop_on=stop_on, logit_max=logit_max,
               zero_grad_patience=zero_grad_patience, grad_norm_max=grad_norm_max,
               d_loss_floor=d_loss_floor, d_loss_patience=d_loss_patience,
               d_wins_loss=d_wins_loss, d_wins_logit_gap=d_wins_logit_gap,
               g_trend_window=g_trend_window, g_trend_min_r2=g_trend_min_r2,
               g_trend_min_change=g_trend_min_change,
               mode_collapse_fraction=mode_collapse_fraction)
    self.watch = _kinds("watch", cfg["watch"])
    self.stop_on = _kinds("stop_on", cfg["stop_on"])
    if not self.stop_on <= self.watch:
      raise ValueError(f"monitor.stop_on has kinds that are not watched, so would never stop "
                       f"training: {sorted(self.stop_on - self.watch)}; add them to "
                       "monitor.watch.")
    self.logit_max = _number(cfg, "logit_max", 0.0)
    self.zero_grad_patience = _number(cfg, "zero_grad_patience", 1, low_inclusive=True,
                                      integer=True)
    self.grad_norm_max = _number(cfg, "grad_norm_max", 0.0)
    self.d_loss_floor = _number(cfg, "d_loss_floor", 0.0)
    self.d_loss_patience = _number(cfg, "d_loss_patience", 1, low_inclusive=True, integer=True)
    self.d_wins_logit_gap = _number(cfg, "d_wins_logit_gap", 0.0)
    self.g_trend_window = _number(cfg, "g_trend_window", 3, low_inclusive=True, integer=True)
    self.g_trend_min_r2 = _number(cfg, "g_trend_min_r2", 0.0, 1.0, low_inclusive=True)
    self.g_trend_min_change = _number(cfg, "g_trend_min_change", 0.0, low_inclusive=True)
    self.mode_collapse_fraction = _number(cfg, "mode_collapse_fraction", 0.0, 1.0)
    if loss is not None and not isinstance(loss, str):
      raise ValueError(f"loss must be a loss name or None, got {loss!r}.")
    self.loss = loss
    self.d_wins_loss: Optional[float] = _number(cfg, "d_wins_loss", 0.0, low_inclusive=True)
    if self.d_wins_loss == 0.0:  # derived from the loss
      eq = D_LOSS_AT_EQUILIBRIUM.get(loss)
      self.d_wins_loss = None if eq is None else 0.25 * eq
    # Kinds that cannot be judged for this loss (D loss of unknown scale or sign).
    self._check_d = loss is None or loss in D_LOSS_AT_EQUILIBRIUM
    self.unchecked = frozenset() if self._check_d else _D_KINDS & self.watch

    self._active: Dict[str, bool] = {k: False for k in KINDS}
    self._clear_run: Dict[str, int] = {k: 0 for k in KINDS}  # logs without the condition
    trend_kinds = (G_LOSS_RISING_WHILE_D_WINS, G_LOSS_FALLING_WHILE_D_WINS)
    self._rearm_after = {k: self.g_trend_window if k in trend_kinds else 1 for k in KINDS}
    self._low_d_loss_run = 0
    self._zero_grad_run = 0
    self._g_losses: Deque[float] = collections.deque(maxlen=self.g_trend_window)
    self._d_won: Deque[bool] = collections.deque(maxlen=self.g_trend_window)
    self._last_step: Optional[int] = None
    self._last_eval_step: Optional[int] = None

  @classmethod
  def from_config(cls, config: Any = None, loss: Optional[str] = None) -> "Monitor":
    """A monitor from a (partial) dict or ConfigDict of `monitor_config_defaults()` keys.

    Missing keys take their defaults; an unknown key is a `KeyError` naming the known ones,
    a bad value a `ValueError` naming the key.
    """
    given = _as_plain_dict(config)
    defaults = monitor_config_defaults()
    unknown = sorted(set(given) - set(defaults))
    if unknown:
      hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(
          k, defaults, n=1)) else repr(k) for k in unknown]
      raise KeyError(f"Unknown monitor config keys: {', '.join(hints)}; known: "
                     f"{sorted(defaults)}.")
    merged = {**defaults, **given}
    if "stop_on" not in given:  # the default stops on those of its kinds that are watched
      watched = _kinds("watch", merged["watch"])
      merged["stop_on"] = tuple(k for k in defaults["stop_on"] if k in watched)
    return cls(**merged, loss=loss)

  def _d_wins(self, m: Mapping[str, float]) -> bool:
    d_loss = m.get("d_loss")
    if self.d_wins_loss is not None and d_loss is not None and d_loss < self.d_wins_loss:
      return True
    real, fake = m.get("d_real_logit"), m.get("d_fake_logit")
    return real is not None and fake is not None and real - fake > self.d_wins_logit_gap

  def _conditions(self, step: int, m: Mapping[str, float]) -> Dict[str, Optional[Alarm]]:
    """For each checked kind, the alarm it would raise at this log (None: condition false)."""
    out: Dict[str, Optional[Alarm]] = {}
    bad = sorted(k for k, v in m.items() if not math.isfinite(v))
    out[NON_FINITE] = Alarm(
        NON_FINITE, step,
        f"Non-finite {bad}: training diverged (NaN/Inf). Resume from an earlier checkpoint "
        "with a lower learning rate, gradient clipping or a gradient penalty, and check the "
        "data for NaN.", {k: m[k] for k in bad}) if bad else None

    huge = {k: m[k] for k in LOGIT_KEYS if k in m and math.isfinite(m[k])
            and abs(m[k]) > self.logit_max}
    norms = {k: m[k] for k in GRAD_NORM_KEYS if k in m}
    self._zero_grad_run = self._zero_grad_run + 1 if norms and all(
        v == 0.0 for v in norms.values()) else 0
    dead = self._zero_grad_run >= self.zero_grad_patience
    why = []
    if huge:
      why.append(f"{', '.join(f'{k}={v:.3g}' for k, v in huge.items())} beyond "
                 f"+-{self.logit_max:g}")
    if dead:
      why.append(f"every gradient norm ({', '.join(norms)}) exactly 0 for the last "
                 f"{self._zero_grad_run} logs")
    out[DIVERGED] = Alarm(
        DIVERGED, step,
        f"{' and '.join(why)}: training diverged without NaN (saturated D, no gradient left); "
        "it will not recover. Start again with lower learning rates, gradient clipping or a "
        "gradient penalty.", {**huge, **(norms if dead else {})}) if why else None

    big = {k: m[k] for k in GRAD_NORM_KEYS if k in m and math.isfinite(m[k])
           and m[k] > self.grad_norm_max}
    out[EXPLODING_GRADIENTS] = Alarm(
        EXPLODING_GRADIENTS, step,
        f"{', '.join(f'{k}={v:.4g}' for k, v in big.items())} > {self.grad_norm_max:g}: "
        "exploding gradients. Try a lower learning rate, gradient clipping "
        "(optax.clip_by_global_norm), a gradient penalty or spectral normalisation in D.",
        big) if big else None

    if not self._check_d:
      return out

    d_loss = m.get("d_loss")
    if d_loss is not None and math.isfinite(d_loss) and d_loss < self.d_loss_floor:
      self._low_d_loss_run += 1
    else:
      self._low_d_loss_run = 0
    out[D_LOSS_COLLAPSE] = Alarm(
        D_LOSS_COLLAPSE, step,
        f"D loss {d_loss:.3g} < {self.d_loss_floor:g} for the last {self.d_loss_patience} "
        "logs: D wins completely and G gets no gradient (vanishing gradients, ganhacks 10); "
        f"{_TRY_AGAINST_STRONG_D}, or a non-saturating/least-squares/hinge loss.",
        {"d_loss": d_loss}) if self._low_d_loss_run >= self.d_loss_patience else None

    g_loss = m.get("g_loss")
    if g_loss is None or not math.isfinite(g_loss):
      self._g_losses.clear()  # a gap in the series: start the window again
      self._d_won.clear()
    else:
      self._g_losses.append(g_loss)
      self._d_won.append(self._d_wins(m))
    rising = falling = None
    if len(self._g_losses) == self.g_trend_window and all(self._d_won):
      slope, r2 = _slope_and_r2(self._g_losses)
      change = slope * (self.g_trend_window - 1)
      if r2 >= self.g_trend_min_r2 and abs(change) >= max(self.g_trend_min_change, 1e-12):
        values = {"g_loss": g_loss, "g_loss_slope_per_log": slope, "r2": r2}
        values.update({k: m[k] for k in ("d_loss", "d_real_logit", "d_fake_logit") if k in m})
        trend = (f"over the last {self.g_trend_window} logs (slope {slope:+.3g}/log, "
                 f"R^2 {r2:.2f}) while D was winning at each")
        if change > 0:
          rising = Alarm(
              G_LOSS_RISING_WHILE_D_WINS, step,
              f"G loss rose steadily {trend}: D is overpowering G and G's gradient is fading "
              f"(this usually precedes D loss -> 0); {_TRY_AGAINST_STRONG_D}.", values)
        else:
          falling = Alarm(
              G_LOSS_FALLING_WHILE_D_WINS, step,
              f"G loss fell steadily {trend}: a steadily falling G loss can mean G fools D "
              "with garbage (ganhacks 10), or G recovering; look at the samples. If they are "
              "garbage or collapsed, try a stronger or regularised D (minibatch features, "
              "spectral norm) or a lower G learning rate.", values)
    out[G_LOSS_RISING_WHILE_D_WINS] = rising
    out[G_LOSS_FALLING_WHILE_D_WINS] = falling
    return out

  def update(self, step: int, metrics: Mapping[str, float]) -> List[Alarm]:
    """Reads one logged metrics dict; returns the alarms that start at this step.

    Args:
      step: the training step of the log; must increase from call to call.
      metrics: metric name -> float (the trainer's logged dict). Missing metrics skip the
        checks that need them.

    Returns:
      New alarms, in `KINDS` order: a kind still in an episode that started at an earlier log
      is not repeated.
    """
    step = int(step)
    if self._last_step is not None and step <= self._last_step:
      raise ValueError(f"Monitor.update got step {step} after step {self._last_step}: steps "
                       "must increase (use a new Monitor for a resumed run).")
    self._last_step = step
    m = {str(k): float(v) for k, v in metrics.items()}
    alarms = []
    for kind, alarm in self._conditions(step, m).items():
      if kind not in self.watch:
        continue
      if alarm is not None:
        if not self._active[kind]:
          alarms.append(alarm)
        self._active[kind] = True
        self._clear_run[kind] = 0
      elif self._active[kind]:
        self._clear_run[kind] += 1
        self._active[kind] = self._clear_run[kind] < self._rearm_after[kind]
    return alarms

  def evaluation(self, step: int, result: Mapping[str, Any]) -> List[Alarm]:
    """Reads one evaluation result (`gax.evaluation`); returns `[mode_collapse alarm]` when
    it covers fewer than `mode_collapse_fraction` of the modes and the previous evaluation
    did not (one alarm per episode), else `[]`. Results without `modes_covered` and `modes`
    (image metrics) are not judged."""
    step = int(step)
    if self._last_eval_step is not None and step <= self._last_eval_step:
      raise ValueError(f"Monitor.evaluation got step {step} after step "
                       f"{self._last_eval_step}: steps must increase.")
    self._last_eval_step = step
    covered, modes = result.get("modes_covered"), result.get("modes")
    if MODE_COLLAPSE not in self.watch or covered is None or not modes:
      return []
    collapsed = covered < self.mode_collapse_fraction * modes
    was = self._active[MODE_COLLAPSE]
    self._active[MODE_COLLAPSE] = collapsed
    if not collapsed or was:
      return []
    return [Alarm(
        MODE_COLLAPSE, step,
        f"{covered} of {modes} modes covered (< {self.mode_collapse_fraction:g} of them): G "
        "has collapsed onto a few modes. Try minibatch discrimination or packing in D, an R1 "
        "penalty, experience replay, or unrolling/more D steps.",
        {"modes_covered": float(covered), "modes": float(modes)})]

  def check(self, alarms: Sequence[Alarm]) -> None:
    """Raises `MonitorStop` if any of `alarms` is of a kind in `stop_on`."""
    stopping = [a for a in alarms if a.kind in self.stop_on]
    if stopping:
      raise MonitorStop(stopping)

  @property
  def active(self) -> FrozenSet[str]:
    """The kinds in an episode: fired and not yet re-armed."""
    return frozenset(k for k, v in self._active.items() if v)


__all__ = ["NON_FINITE", "DIVERGED", "EXPLODING_GRADIENTS", "D_LOSS_COLLAPSE",
           "G_LOSS_RISING_WHILE_D_WINS", "G_LOSS_FALLING_WHILE_D_WINS", "MODE_COLLAPSE",
           "KINDS", "GRAD_NORM_KEYS", "LOGIT_KEYS", "D_LOSS_AT_EQUILIBRIUM",
           "monitor_config_defaults", "Alarm", "MonitorStop", "Monitor"]
