"""The failure monitor on synthetic metric streams."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from gax import losses
from gax import monitor as mon
from gax.monitor import Monitor, MonitorStop


def healthy(step):
  """A balanced non-saturating run: losses near equilibrium with some wiggle."""
  wiggle = 0.05 * math.sin(step)
  return {"d_loss": 1.3 + wiggle, "g_loss": 0.8 - wiggle, "d_real_logit": 0.3,
          "d_fake_logit": -0.2, "d_grad_norm": 2.0 + wiggle, "g_grad_norm": 1.5,
          "d_penalty_r1": 0.01}


def feed(monitor, stream, start=1):
  """Feeds `stream` (metric dicts) at steps start, start+1, ...; returns {step: [kinds]}."""
  fired = {}
  for i, metrics in enumerate(stream):
    alarms = monitor.update(start + i, metrics)
    if alarms:
      fired[start + i] = [a.kind for a in alarms]
  return fired


def with_(step, **changes):
  return {**healthy(step), **changes}


@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "least_squares", "wasserstein",
                                  "relativistic_average_hinge", None])
def test_a_healthy_stream_raises_nothing(loss):
  m = Monitor.from_config({}, loss=loss)
  assert feed(m, [healthy(s) for s in range(300)]) == {}
  assert m.active == frozenset()


def test_non_finite_fires_once_per_episode_and_rearms():
  m = Monitor.from_config()
  stream = [healthy(s) for s in range(10)]
  for s in (3, 4, 5, 8):
    stream[s] = with_(s, g_loss=float("nan"), d_grad_norm=float("inf"))
  fired = feed(m, stream, start=1)
  assert fired == {4: ["non_finite"], 9: ["non_finite"]}
  alarm = Monitor.from_config().update(7, stream[3])[0]
  assert alarm.step == 7 and "['d_grad_norm', 'g_loss']" in alarm.message
  assert "diverged" in alarm.message
  # The JSON record is valid JSON (strict: no bare NaN/Infinity).
  record = json.loads(json.dumps(alarm.to_dict(), allow_nan=False))
  assert record == {"step": 7, "kind": "non_finite", "message": alarm.message,
                    "values": {"d_grad_norm": "inf", "g_loss": "nan"}}


def test_exploding_gradients_fires_for_either_player_once_per_episode():
  m = Monitor.from_config({"grad_norm_max": 100.0})
  stream = [healthy(s) for s in range(12)]
  stream[2] = with_(2, d_grad_norm=150.0)
  stream[3] = with_(3, d_grad_norm=300.0, g_grad_norm=120.0)  # same episode
  stream[4] = with_(4, g_grad_norm=100.0)  # not above the threshold: episode ends
  stream[7] = with_(7, g_grad_norm=1e4)
  fired = feed(m, stream, start=0)
  assert fired == {2: ["exploding_gradients"], 7: ["exploding_gradients"]}
  alarm = Monitor.from_config().update(1, stream[7])[0]
  assert "g_grad_norm=1e+04 > 100" in alarm.message and alarm.values == {"g_grad_norm": 1e4}


def test_an_infinite_gradient_norm_is_non_finite_not_exploding():
  m = Monitor.from_config()
  assert [a.kind for a in m.update(1, with_(1, d_grad_norm=float("inf")))] == ["non_finite"]


def test_d_loss_collapse_fires_after_patience_consecutive_logs():
  m = Monitor.from_config({"d_loss_floor": 1e-3, "d_loss_patience": 3})
  d = [1.3, 5e-4, 4e-4, 1.0, 3e-4, 2e-4, 1e-4, 1e-4, 1e-4, 0.5, 1e-5, 1e-5, 1e-5]
  #  step 0    1     2    3     4     5     6 <- 3rd low in a row   10   11   12 <- fires again
  stream = [with_(s, d_loss=v, g_loss=5.0) for s, v in enumerate(d)]
  fired = feed(m, stream, start=0)
  assert fired == {6: ["d_loss_collapse"], 12: ["d_loss_collapse"]}
  alarm = Monitor.from_config({"d_loss_patience": 3}).update(1, stream[4])
  assert alarm == []  # one low log is not yet a collapse


def test_d_loss_collapse_threshold_is_configurable_and_message_says_what_to_try():
  m = Monitor.from_config({"d_loss_floor": 0.1, "d_loss_patience": 1})
  (alarm,) = m.update(5, with_(5, d_loss=0.05))
  assert alarm.kind == "d_loss_collapse" and alarm.step == 5
  assert "vanishing gradients" in alarm.message and "label smoothing" in alarm.message
  assert "last 1 logs" in alarm.message


def d_winning(step, g_loss):
  """D wins (loss 0.1 < a quarter of 2 ln 2, real logits far above fake ones)."""
  return with_(step, d_loss=0.1, d_real_logit=3.0, d_fake_logit=-3.0, g_loss=g_loss)


def test_g_loss_rising_while_d_wins():
  m = Monitor.from_config({"g_trend_window": 5}, loss="non_saturating")
  stream = [d_winning(s, 2.0 + 0.2 * s + 0.02 * (-1) ** s) for s in range(8)]
  fired = feed(m, stream, start=1)
  # The window is full at the 5th log; the condition then holds throughout: one alarm.
  assert fired == {5: ["g_loss_rising_while_d_wins"]}
  assert m.active == {"g_loss_rising_while_d_wins"}
  # A flat G loss: the rising trend leaves the window and the condition stops holding at step
  # 12; the kind re-arms after a window (5 logs) without it, at step 16.
  for step in range(9, 16):
    assert m.update(step, d_winning(step, 3.6)) == []
    assert m.active == {"g_loss_rising_while_d_wins"}, step
  assert m.update(16, d_winning(16, 3.6)) == [] and m.active == frozenset()
  # It fires again when G's loss rises again.
  assert feed(m, [d_winning(s, 3.6 + 0.3 * s) for s in range(1, 6)], start=17) == {
      18: ["g_loss_rising_while_d_wins"]}


def test_a_flickering_trend_is_one_episode():
  m = Monitor.from_config({"g_trend_window": 4, "g_trend_min_r2": 0.9})
  g = [1.0, 2.0, 3.0, 4.0, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0]
  # The condition holds at logs 4 and 8-10 but not at 5-7 (R^2 0.40, 0.45, 0.64): a gap
  # shorter than the window does not re-arm the kind.
  r2 = [mon._slope_and_r2(g[i - 4:i])[1] for i in range(4, 11)]  # pylint: disable=protected-access
  assert [x >= 0.9 for x in r2] == [True, False, False, False, True, True, True]
  assert feed(m, [d_winning(s, v) for s, v in enumerate(g)]) == {
      4: ["g_loss_rising_while_d_wins"]}


def test_g_loss_falling_while_d_wins():
  m = Monitor.from_config({"g_trend_window": 4, "g_trend_min_change": 0.2})
  stream = [d_winning(s, 3.0 - 0.1 * s) for s in range(6)]
  fired = feed(m, stream, start=10)
  assert fired == {13: ["g_loss_falling_while_d_wins"]}
  m = Monitor.from_config({"g_trend_window": 4})
  alarms = [a for s, x in enumerate(stream) for a in m.update(s + 1, x)]
  assert [a.kind for a in alarms] == ["g_loss_falling_while_d_wins"]
  assert "fools D with garbage" in alarms[0].message
  assert alarms[0].values["g_loss_slope_per_log"] == pytest.approx(-0.1)
  assert alarms[0].values["r2"] == pytest.approx(1.0)


def test_g_loss_trends_need_d_winning_at_every_log_of_the_window():
  m = Monitor.from_config({"g_trend_window": 4})
  stream = [d_winning(s, 3.0 - 0.3 * s) for s in range(8)]
  stream[5] = with_(5, g_loss=1.5)  # D not winning at one log: no window without it
  assert feed(m, stream) == {4: ["g_loss_falling_while_d_wins"]}
  # A falling G loss alone (D not winning) is how a healthy run starts: no alarm.
  m = Monitor.from_config({"g_trend_window": 4})
  assert feed(m, [with_(s, g_loss=3.0 - 0.3 * s) for s in range(8)]) == {}


def test_d_wins_loss_is_derived_from_the_loss_unless_given():
  assert Monitor.from_config(loss="non_saturating").d_wins_loss == pytest.approx(
      0.5 * math.log(2.0))
  assert Monitor.from_config(loss="least_squares").d_wins_loss == pytest.approx(0.0625)
  assert Monitor.from_config({"d_wins_loss": 0.3}, loss="hinge").d_wins_loss == 0.3
  m = Monitor.from_config({"d_wins_loss": 0.5, "g_trend_window": 3})  # any loss
  stream = [with_(s, d_loss=0.4, g_loss=1.0 + s) for s in range(3)]
  assert feed(m, stream) == {3: ["g_loss_rising_while_d_wins"]}


def test_d_wins_by_logit_gap_alone_when_the_loss_is_unknown():
  m = Monitor.from_config({"g_trend_window": 3, "d_wins_logit_gap": 4.0})
  assert m.d_wins_loss is None
  stream = [with_(s, d_loss=0.01, g_loss=1.0 + s, d_real_logit=1.0, d_fake_logit=-1.0)
            for s in range(4)]
  assert feed(m, stream) == {}  # gap 2 < 4, and no D-loss criterion without a loss name
  stream = [{**x, "d_fake_logit": -4.0} for x in stream]
  assert feed(m, stream, start=10) == {12: ["g_loss_rising_while_d_wins"]}


def test_noisy_g_loss_is_not_a_steady_trend():
  m = Monitor.from_config({"g_trend_window": 6}, loss="non_saturating")
  noisy = [3.0, 4.0, 2.5, 4.2, 2.8, 3.9, 3.1, 4.1]
  assert feed(m, [d_winning(s, v) for s, v in enumerate(noisy)]) == {}


@pytest.mark.parametrize("loss", ["wasserstein", "some_new_loss"])
def test_losses_of_unknown_scale_skip_the_d_based_kinds(loss):
  m = Monitor.from_config({"g_trend_window": 3, "d_loss_patience": 1}, loss=loss)
  assert m.unchecked == {"d_loss_collapse", "g_loss_rising_while_d_wins",
                         "g_loss_falling_while_d_wins"}
  stream = [with_(s, d_loss=-50.0, d_real_logit=30.0, d_fake_logit=-20.0, g_loss=20.0 - s)
            for s in range(6)]
  assert feed(m, stream) == {}
  assert [a.kind for a in m.update(7, with_(7, g_grad_norm=500.0))] == ["exploding_gradients"]


def test_several_kinds_at_one_step_come_in_kinds_order():
  m = Monitor.from_config({"d_loss_patience": 1})
  alarms = m.update(3, with_(3, d_loss=0.0, d_grad_norm=1e3, g_loss=float("nan")))
  assert [a.kind for a in alarms] == ["non_finite", "exploding_gradients", "d_loss_collapse"]


def test_watch_limits_the_kinds_checked():
  m = Monitor.from_config({"watch": ["exploding_gradients"], "stop_on": []})
  assert m.update(1, with_(1, g_loss=float("nan"), d_grad_norm=500.0))[0].kind == (
      "exploding_gradients")
  assert Monitor.from_config({"watch": (), "stop_on": ()}).update(
      1, with_(1, g_loss=float("nan"))) == []


def test_missing_metrics_skip_their_checks():
  m = Monitor.from_config({"d_loss_patience": 1})
  assert m.update(1, {"d_loss": 1.2}) == []
  assert m.update(2, {}) == []
  assert [a.kind for a in m.update(3, {"d_loss": 0.0})] == ["d_loss_collapse"]


def test_check_raises_monitor_stop_only_for_stop_on_kinds():
  m = Monitor.from_config({"stop_on": ["d_loss_collapse", "non_finite"], "d_loss_patience": 2})
  m.check(m.update(1, with_(1, d_grad_norm=1e3)))  # exploding: warned, not stopped
  m.check(m.update(2, with_(2, d_loss=0.0)))
  alarms = m.update(3, with_(3, d_loss=0.0))
  with pytest.raises(MonitorStop, match=r"stop_on.*\[d_loss_collapse\] step 3") as e:
    m.check(alarms)
  assert [a.kind for a in e.value.alarms] == ["d_loss_collapse"]
  assert isinstance(e.value, RuntimeError)
  m.check([])


def test_default_config_stops_on_non_finite_and_diverged_only():
  defaults = mon.monitor_config_defaults()
  assert set(defaults["watch"]) == set(mon.KINDS) and tuple(defaults["stop_on"]) == (
      "non_finite", "diverged")
  m = Monitor.from_config()
  with pytest.raises(MonitorStop, match="non_finite"):
    m.check(m.update(1, with_(1, d_loss=float("nan"))))
  m = Monitor.from_config()
  with pytest.raises(MonitorStop, match="diverged"):
    m.check(m.update(1, with_(1, d_real_logit=8.6e14)))
  m.check(Monitor.from_config({"d_loss_patience": 1}).update(1, with_(1, d_loss=0.0)))


@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "wasserstein"])
def test_finite_divergence_fires_on_huge_logits_or_a_window_of_zero_gradients(loss):
  # The run at learning rate 1e6: logits about 8.6e14, both gradient norms 0.
  m = Monitor.from_config({"logit_max": 1e6}, loss=loss)
  [alarm] = [a for a in m.update(1, with_(1, d_real_logit=8.6e14, d_fake_logit=-1e3))
             if a.kind == "diverged"]
  assert alarm.values == {"d_real_logit": 8.6e14} and "beyond +-1e+06" in alarm.message
  assert not [a for a in m.update(2, with_(2, d_fake_logit=-2e6)) if a.kind == "diverged"]
  assert "diverged" in m.active  # one alarm per episode
  m = Monitor.from_config({"zero_grad_patience": 3}, loss=loss)
  zero = dict(d_grad_norm=0.0, g_grad_norm=0.0)
  fired = [[a.kind for a in m.update(s, with_(s, **zero))] for s in range(1, 5)]
  assert [("diverged" in f) for f in fired] == [False, False, True, False]
  assert m.update(5, with_(5)) == [] and "diverged" not in m.active  # re-armed
  # One player's gradient 0 (hinge D beyond its margins) is not divergence.
  m = Monitor.from_config({"zero_grad_patience": 1}, loss=loss)
  assert not [a for a in m.update(1, with_(1, d_grad_norm=0.0)) if a.kind == "diverged"]
  # Logits of +-1e6 exactly are allowed.
  assert not [a for a in m.update(2, with_(2, d_real_logit=1e6)) if a.kind == "diverged"]


def test_defaults_are_a_plain_json_dict_and_accepted_from_a_config_dict():
  defaults = mon.monitor_config_defaults()
  assert json.loads(json.dumps(defaults)) == {k: list(v) if isinstance(v, tuple) else v
                                              for k, v in defaults.items()}
  section = ml_collections.ConfigDict(defaults)
  section.d_loss_floor = 0.01
  assert Monitor.from_config(section).d_loss_floor == 0.01
  # Also after a JSON round trip (the trainer saves the config as JSON): lists, not tuples.
  assert Monitor.from_config(json.loads(json.dumps(defaults))).stop_on == {"non_finite",
                                                                           "diverged"}
  assert Monitor.from_config({"stop_on": "non_finite, exploding_gradients"}).stop_on == {
      "non_finite", "exploding_gradients"}


def test_unknown_keys_and_bad_values_are_clear_errors():
  with pytest.raises(KeyError, match="'d_loss_flor' \\(did you mean 'd_loss_floor'\\?\\)"):
    Monitor.from_config({"d_loss_flor": 1e-3})
  with pytest.raises(ValueError, match="monitor.stop_on has unknown failure kinds \\['nan'\\]"):
    Monitor.from_config({"stop_on": ["nan"]})
  with pytest.raises(ValueError, match="not watched.*d_loss_collapse"):
    Monitor.from_config({"watch": ["non_finite"], "stop_on": ["d_loss_collapse"]})
  with pytest.raises(ValueError, match="monitor.d_loss_patience must be an integer"):
    Monitor.from_config({"d_loss_patience": 2.5})
  with pytest.raises(ValueError, match="monitor.d_loss_patience must be >= 1"):
    Monitor.from_config({"d_loss_patience": 0})
  with pytest.raises(ValueError, match="monitor.grad_norm_max must be > 0"):
    Monitor.from_config({"grad_norm_max": -1})
  with pytest.raises(ValueError, match="monitor.grad_norm_max must be a number"):
    Monitor.from_config({"grad_norm_max": "big"})
  with pytest.raises(ValueError, match="monitor.g_trend_min_r2 must be >= 0 and <= 1"):
    Monitor.from_config({"g_trend_min_r2": 1.5})
  with pytest.raises(ValueError, match="monitor.g_trend_window must be >= 3"):
    Monitor.from_config({"g_trend_window": 2})
  with pytest.raises(ValueError, match="monitor.d_wins_loss must be >= 0"):
    Monitor.from_config({"d_wins_loss": -0.5})
  with pytest.raises(ValueError, match="monitor.watch must be a list"):
    Monitor.from_config({"watch": 3})
  with pytest.raises(TypeError, match="must be a mapping"):
    Monitor.from_config(["non_finite"])


def test_steps_must_increase():
  m = Monitor.from_config()
  m.update(10, healthy(10))
  with pytest.raises(ValueError, match="step 10 after step 10"):
    m.update(10, healthy(10))


def test_equilibrium_d_losses_match_the_registered_losses():
  """Each loss's entry is D's best loss when real and fake look alike (all logits equal)."""
  logits = jnp.linspace(-3.0, 3.0, 601)
  for name in losses.LOSSES.names():
    if name == "wasserstein":
      assert name not in mon.D_LOSS_AT_EQUILIBRIUM
      continue
    assert name in mon.D_LOSS_AT_EQUILIBRIUM, f"{name}: add its equilibrium D loss"
    d = losses.get_loss(name).d
    values = jax.vmap(lambda c, d=d: d(jnp.full((4,), c), jnp.full((4,), c)))(logits)
    assert float(jnp.min(values)) == pytest.approx(mon.D_LOSS_AT_EQUILIBRIUM[name], abs=1e-5), name


def test_mode_collapse_fires_once_per_episode_from_evaluations():
  m = Monitor.from_config({"mode_collapse_fraction": 0.5})
  ev = lambda step, covered, modes=8: m.evaluation(step, {"modes_covered": covered,
                                                          "modes": modes})
  assert ev(100, 8) == []
  [alarm] = ev(200, 3)  # 3 < 0.5 * 8
  assert (alarm.kind, alarm.step) == ("mode_collapse", 200)
  assert alarm.values == {"modes_covered": 3.0, "modes": 8.0} and "3 of 8 modes" in alarm.message
  assert ev(300, 2) == []  # the same episode
  assert ev(400, 4) == []  # 4 = 0.5 * 8 is not below: recovered, re-armed
  assert [a.kind for a in ev(500, 1)] == ["mode_collapse"]
  assert m.evaluation(600, {"fid": 3.0}) == []  # image results are not judged
  with pytest.raises(ValueError, match="steps must increase"):
    m.evaluation(600, {"modes_covered": 8, "modes": 8})


def test_mode_collapse_can_stop_training_and_be_unwatched():
  m = Monitor.from_config({"stop_on": ["mode_collapse", "non_finite"]})
  with pytest.raises(MonitorStop, match="mode_collapse"):
    m.check(m.evaluation(10, {"modes_covered": 100, "modes": 1000}))
  quiet = Monitor.from_config({"watch": ["non_finite"]})
  assert quiet.evaluation(10, {"modes_covered": 0, "modes": 8}) == []
  for bad in (0.0, 1.5, "half"):
    with pytest.raises(ValueError, match="mode_collapse_fraction"):
      Monitor.from_config({"mode_collapse_fraction": bad})
