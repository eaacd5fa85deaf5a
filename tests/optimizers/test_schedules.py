"""Learning-rate schedules against PyTorch's schedulers and Keras's closed forms."""
import math

import pytest

from cnnlab.optimizers import SGD, schedules
from cnnlab.optimizers.schedules import CosineDecay, ExponentialDecay, OneCycle, PiecewiseConstantDecay, StepDecay
from tests.helpers import needs_torch, torch


def torch_lrs(make_scheduler, lr, steps):
    """The lr torch uses at steps 0 .. steps-1 (scheduler stepped after each optimizer step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def assert_curve(schedule, expected, rel=1e-6):
    for step, lr in enumerate(expected):
        assert schedule(step) == pytest.approx(lr, rel=rel, abs=1e-12), f"step {step}"


@needs_torch
def test_exponential_decay_matches_exponential_lr():
    assert_curve(ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9),
                 torch_lrs(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9), 0.1, 30))


def test_exponential_decay_closed_form():
    s = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert s(0) == 0.1 and s(5) == pytest.approx(0.1 * 0.5 ** 0.5) and s(20) == pytest.approx(0.025)
    st = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [st(9), st(10), st(25)] == pytest.approx([0.1, 0.05, 0.025])


@needs_torch
def test_step_decay_matches_step_lr():
    assert_curve(StepDecay(0.2, step_size=4, factor=0.3),
                 torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.3), 0.2, 20))


def test_piecewise_constant_keras_boundaries():
    s = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [s(0), s(10), s(11), s(20), s(21), s(1000)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more"):
        PiecewiseConstantDecay([10, 20], [1.0, 0.5])


@needs_torch
def test_cosine_decay_matches_cosine_annealing():
    # Keras's alpha * initial lr is torch's eta_min
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.01), 0.1, 21)
    assert_curve(CosineDecay(0.1, decay_steps=20, alpha=0.1), expected, rel=1e-5)


def test_cosine_decay_keras_warmup_and_clamp():
    s = CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=5, alpha=0.2)
    assert [s(0), s(1), s(4)] == pytest.approx([0.0, 0.2, 0.8])  # linear warmup
    assert s(5) == pytest.approx(1.0)
    assert s(10) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(15) == pytest.approx(0.2) and s(100) == pytest.approx(0.2)  # stays at the floor
    assert CosineDecay(1.0, 10)(50) == pytest.approx(0.0)


@needs_torch
@pytest.mark.parametrize("kwargs", [{}, {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}])
def test_one_cycle_matches_torch(kwargs):
    total = 50
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=total,
                                                                        **kwargs), 0.5, total)
    s = OneCycle(0.5, total, **kwargs)
    assert_curve(s, expected, rel=1e-6)
    assert s(total + 10) == pytest.approx(expected[-1])  # clamped past the end


@pytest.mark.parametrize("schedule", [ExponentialDecay(0.1, 3, 0.7, staircase=True),
                                      PiecewiseConstantDecay([2], [0.1, 0.01]), StepDecay(0.1, 3, 0.5),
                                      CosineDecay(0.1, 20, alpha=0.05, warmup_target=0.2, warmup_steps=3),
                                      OneCycle(0.3, 40, pct_start=0.2)])
def test_serialize_round_trip_inside_optimizer(schedule):
    config = schedules.serialize(schedule)
    again = schedules.get(config)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert [again(s) for s in range(30)] == [schedule(s) for s in range(30)]
    opt_config = SGD(schedule).get_config()
    assert opt_config["learning_rate"] == config
    assert SGD.from_config(opt_config).schedule.get_config() == schedule.get_config()


def test_unknown_schedule():
    with pytest.raises(ValueError, match="Unknown learning-rate schedule"):
        schedules.deserialize({"class_name": "Warmup", "config": {}})
