"""Learning-rate schedules match Dassl's (values from the CoOp-family configs)."""
import pytest
import torch

from toolbox import build_lr_scheduler, build_optimizer, get_cfg_default


def schedule(max_epoch, lr, warmup_type="constant", recount=True):
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = lr
    cfg.OPTIM.MAX_EPOCH = max_epoch
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = warmup_type
    cfg.OPTIM.WARMUP_RECOUNT = recount
    param = torch.nn.Parameter(torch.zeros(1))
    optim = build_optimizer([param], cfg.OPTIM)
    sched = build_lr_scheduler(optim, cfg.OPTIM)
    lrs = []
    for _ in range(max_epoch):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return lrs, optim, sched


def test_constant_warmup_then_cosine_restarting_from_base_lr():
    lrs, _, _ = schedule(10, 0.002)
    expected = [1e-5, 0.002, 0.0019511, 0.0018090, 0.0015878, 0.0013090, 0.001,
                0.00069098, 0.00041221, 0.00019098]
    assert lrs == pytest.approx(expected, rel=1e-4)

    lrs, _, _ = schedule(5, 0.0035)
    assert lrs == pytest.approx([1e-5, 0.0035, 0.0031658, 0.0022908, 0.0012092], rel=1e-4)


def test_sgd_uses_dassl_momentum_and_weight_decay():
    _, optim, _ = schedule(2, 0.002)
    group = optim.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 5e-4


def test_scheduler_state_survives_weights_only_round_trip(tmp_path):
    _, optim, sched = schedule(4, 0.002)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    _, optim2, sched2 = schedule(1, 0.002)
    sched2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
    assert sched2.successor.last_epoch == sched.successor.last_epoch


def test_unknown_optimizer_and_warmup_are_rejected():
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "lion"
    with pytest.raises(ValueError, match="lion"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
