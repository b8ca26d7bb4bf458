"""Distillation losses: values, masking, layer maps, config validation."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from aura_model.distill import (
    DistillConfig,
    ProjectionHeads,
    default_layer_map,
    layer_alignment_loss,
    layerwise_loss,
    projected_layerwise_loss,
    pool_time,
    response_ce,
    response_kl,
    monotonic_match_loss,
    text_state_loss,
    total_loss,
    validate_layer_map,
)
from aura_model.errors import AuraError


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    actual, expected = torch.as_tensor(actual).float(), torch.as_tensor(expected).float()
    diff = (actual - expected).abs()
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol, equal_nan=False), (
        f"max diff {diff.max().item():.3g}, mean diff {diff.mean().item():.3g}\nactual={actual}\nexpected={expected}"
    )


def lengths_mask(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) bool


def poison_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill the padding positions with huge random values and some NaN/inf."""
    garbage = torch.randn_like(x) * 1e6
    garbage.view(-1)[::3] = float("nan")
    garbage.view(-1)[1::7] = float("inf")
    expand = mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))
    return torch.where(expand, x, garbage)


# ------------------------------------------------------------------- layer loss


def test_identical_inputs_give_zero_layer_loss():
    x = torch.randn(2, 7, 16)
    mask = lengths_mask([7, 4], 7)
    assert layer_alignment_loss(x, x.clone(), mask, beta=1.0).abs().item() < 1e-6


def test_layer_loss_is_positive_and_scale_invariant():
    s, t = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    mask = lengths_mask([5, 3], 5)
    loss = layer_alignment_loss(s, t, mask, beta=0.5)
    assert loss.item() > 0.1
    # Layer norm over D: an affine change of the student's scale/offset changes nothing.
    assert_close(layer_alignment_loss(s * 7.0 + 3.0, t, mask, beta=0.5), loss, atol=1e-5)


def test_layer_loss_beta_weights_the_mse():
    s, t = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    mask = torch.ones(1, 4, dtype=torch.bool)
    l0 = layer_alignment_loss(s, t, mask, beta=0.0)
    l1 = layer_alignment_loss(s, t, mask, beta=1.0)
    l2 = layer_alignment_loss(s, t, mask, beta=2.0)
    assert l1 > l0
    assert_close(l2 - l1, l1 - l0, atol=1e-5)  # linear in beta


def test_padding_does_not_change_layer_loss_nor_leak_nan_gradients():
    s, t = torch.randn(3, 6, 12), torch.randn(3, 6, 12)
    mask = lengths_mask([6, 2, 4], 6)
    clean = layer_alignment_loss(s, t, mask, beta=1.0)

    s_bad = poison_padding(s, mask).requires_grad_(True)
    t_bad = poison_padding(t, mask).requires_grad_(True)
    dirty = layer_alignment_loss(s_bad, t_bad, mask, beta=1.0)
    assert torch.isfinite(dirty)
    assert_close(dirty, clean)
    dirty.backward()
    assert t_bad.grad is None  # the teacher is a target, never trained through this loss
    assert torch.isfinite(s_bad.grad).all()
    assert (s_bad.grad[~mask] == 0).all()

    # Same as the mean over the valid positions laid out with no padding at all.
    packed = layer_alignment_loss(s[mask][None], t[mask][None], torch.ones(1, int(mask.sum()), dtype=torch.bool), 1.0)
    assert_close(clean, packed)


def test_layer_loss_without_valid_positions_is_zero_and_finite():
    s = torch.full((1, 3, 4), float("nan"), requires_grad=True)
    loss = layer_alignment_loss(s, torch.randn(1, 3, 4), torch.zeros(1, 3, dtype=torch.bool), beta=1.0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(s.grad).all()


# F.layer_norm's default eps: layer_norm(x) = (x - mean) / sqrt(var + eps), var the biased variance over D.
LN_EPS = 1e-5


def test_layer_loss_matches_a_value_computed_by_hand():
    # D = 4. Every student vector below has var 1 over D, so layer_norm scales it by c; the teacher
    # [3, -1, -1, -1] has var (9 + 1 + 1 + 1) / 4 = 3, so layer_norm scales it by c3.
    c, c3 = 1 / math.sqrt(1 + LN_EPS), 1 / math.sqrt(3 + LN_EPS)
    student = torch.tensor([[[3.0, 1, 3, 1], [1, 1, -1, -1]],  # [3, 1, 3, 1] has mean 2: normalises as [1, -1, 1, -1]
                            [[1, -1, 1, -1], [0, 0, 0, 9]]])  # row 1, position 1: padding
    teacher = torch.tensor([[[11.0, 11, 9, 9], [3, -1, -1, -1]],  # [11, 11, 9, 9] normalises as [1, 1, -1, -1]
                            [[-1, 1, -1, 1], [9, 0, 0, 0]]])
    mask = lengths_mask([2, 1], 2)
    beta = 0.5

    # Row 0, position 0: c[1, -1, 1, -1] vs c[1, 1, -1, -1]. Orthogonal: 1 - cos = 1.
    # Difference c[0, -2, 2, 0]: MSE = c^2 (0 + 4 + 4 + 0) / 4 = 2 c^2.
    loss_00 = 1 + beta * 2 * c**2
    # Row 0, position 1: c[1, 1, -1, -1] vs c3[3, -1, -1, -1]. Dot product c c3 (3 - 1 + 1 + 1) = 4 c c3,
    # norms 2c and sqrt(12) c3: cos = 4 / (2 sqrt(12)) = 1 / sqrt(3).
    # MSE = (|s|^2 + |t|^2 - 2 s.t) / 4 = (4 c^2 + 12 c3^2 - 8 c c3) / 4.
    loss_01 = (1 - 1 / math.sqrt(3)) + beta * (4 * c**2 + 12 * c3**2 - 8 * c * c3) / 4
    # Row 1, position 0: c[1, -1, 1, -1] vs its opposite. 1 - cos = 2; difference 2c[1, -1, 1, -1]: MSE = 4 c^2.
    loss_10 = 2 + beta * 4 * c**2
    # Mean over the three real positions; row 1's padding does not count.
    expected = (loss_00 + loss_01 + loss_10) / 3

    assert_close(layer_alignment_loss(student, teacher, mask, beta), torch.tensor(expected))


def test_projected_layerwise_loss_is_the_mean_of_its_pairs_computed_by_hand():
    c = 1 / math.sqrt(1 + LN_EPS)  # layer_norm's scale of a vector with var 1 (see LN_EPS)
    mask = lengths_mask([2, 1], 2)
    beta = 0.5
    # Pair 1: every real position is [1, -1, 1, -1] vs its opposite: 1 - cos = 2, MSE = 4 c^2 (as above).
    student_1 = torch.tensor([1.0, -1, 1, -1]).expand(2, 2, 4)
    teacher_1 = -student_1
    pair_1 = 2 + beta * 4 * c**2
    # Pair 2: orthogonal, [1, -1, 1, -1] vs [1, 1, -1, -1] (shifted by 10): 1 - cos = 1, MSE = 2 c^2.
    teacher_2 = torch.tensor([11.0, 11, 9, 9]).expand(2, 2, 4)
    pair_2 = 1 + beta * 2 * c**2

    total, per_pair = projected_layerwise_loss([student_1, student_1], [teacher_1, teacher_2], mask, beta)

    assert_close(torch.stack(per_pair), torch.tensor([pair_1, pair_2]))
    assert_close(total, torch.tensor((pair_1 + pair_2) / 2))


# -------------------------------------------------------------------- pool_time


def test_pool_time_hand_computed_partial_group_and_masked_frame():
    # Row 0: frame 2 is masked (holds NaN), T=5 with stack 2 -> groups [0,1] [2,3] [4,pad].
    # Row 1: only 3 valid frames -> last group is empty.
    x = torch.tensor(
        [
            [[1.0, -1.0], [2.0, -2.0], [float("nan"), 99.0], [4.0, -4.0], [5.0, -5.0]],
            [[10.0, 0.0], [20.0, 0.0], [30.0, 6.0], [1e9, 1e9], [float("nan"), 0.0]],
        ]
    )  # (2, 5, 2)
    mask = torch.tensor([[True, True, False, True, True], [True, True, True, False, False]])
    pooled, pooled_mask = pool_time(x, mask, stack=2)
    expected = torch.tensor(
        [
            [[1.5, -1.5], [4.0, -4.0], [5.0, -5.0]],
            [[15.0, 0.0], [30.0, 6.0], [0.0, 0.0]],
        ]
    )
    assert pooled.shape == (2, 3, 2)
    assert_close(pooled, expected)
    assert pooled_mask.tolist() == [[True, True, True], [True, True, False]]


@pytest.mark.parametrize("t,stack", [(1, 4), (4, 4), (9, 4), (10, 3), (7, 1)])
def test_pool_time_length_and_full_mask_mean(t, stack):
    x = torch.randn(2, t, 3)
    mask = torch.ones(2, t, dtype=torch.bool)
    pooled, pooled_mask = pool_time(x, mask, stack)
    assert pooled.shape == (2, math.ceil(t / stack), 3)
    assert pooled_mask.all()
    assert_close(pooled[:, 0], x[:, :stack].mean(1))


# ---------------------------------------------------------------- layer maps


def test_default_layer_map_examples():
    assert default_layer_map(8, 4) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert default_layer_map(4, 6) == [(1, 3), (2, 6)]
    m = default_layer_map(24, 32)
    assert len(m) == 12
    assert [s for s, _ in m] == list(range(1, 13))
    assert [t for _, t in m] == [3, 5, 8, 11, 13, 16, 19, 21, 24, 27, 29, 32]
    assert m[-1] == (12, 32)
    assert default_layer_map(1, 5) == [(1, 5)]  # K is at least 1
    assert default_layer_map(2, 1) == [(1, 1)]


def test_default_layer_map_properties_over_many_sizes():
    for n_s in range(1, 49):
        for n_t in range(1, 41):
            m = default_layer_map(n_s, n_t)
            k = max(1, min(n_t, n_s // 2))
            assert [s for s, _ in m] == list(range(1, k + 1)), (n_s, n_t, m)
            teachers = [t for _, t in m]
            assert all(a < b for a, b in zip(teachers, teachers[1:])), (n_s, n_t, m)
            assert 1 <= teachers[0] and teachers[-1] == n_t, (n_s, n_t, m)
            assert validate_layer_map(m, n_s, n_t) == m
            # Even spacing: each teacher index is within half a step of k * n_t / K.
            for s, t in m:
                assert abs(t - s * n_t / k) <= 0.5 + 1e-9, (n_s, n_t, m)


@pytest.mark.parametrize("n_s,n_t", [(0, 4), (4, 0), (-1, 3)])
def test_default_layer_map_rejects_bad_sizes(n_s, n_t):
    with pytest.raises(AuraError, match="must be an integer >= 1"):
        default_layer_map(n_s, n_t)


def test_configured_layer_map_is_used_verbatim():
    custom = ((2, 1), (5, 3), (3, 4))  # deliberately not the default and not sorted
    cfg = DistillConfig(layer_map=custom)
    assert cfg.resolve_layer_map(8, 4) == [(2, 1), (5, 3), (3, 4)]
    assert DistillConfig().resolve_layer_map(8, 4) == default_layer_map(8, 4)


@pytest.mark.parametrize(
    "layer_map,match",
    [
        (((9, 1),), r"pair \(9, 1\): student layer 9 is out of range"),
        (((1, 5),), r"pair \(1, 5\): teacher layer 5 is out of range"),
        (((1, 1), (1, 1)), r"pair \(1, 1\) appears more than once"),
        (((0, 1),), r"must be >= 1"),
        ([], r"must not be empty"),
    ],
)
def test_invalid_layer_maps_raise(layer_map, match):
    with pytest.raises(AuraError, match=match):
        validate_layer_map(layer_map, 8, 4)


def test_configured_map_out_of_range_raises_at_resolve():
    cfg = DistillConfig(layer_map=[[1, 1], [2, 7]])
    with pytest.raises(AuraError, match=r"\(2, 7\)"):
        cfg.resolve_layer_map(8, 4)


# ----------------------------------------------------------- heads + layerwise


def test_gradient_steps_on_projection_heads_reduce_the_layer_loss():
    layer_map = default_layer_map(8, 4)[:2]
    heads = ProjectionHeads(layer_map, student_dim=12, teacher_dim=6)
    assert len(heads.heads) == 2 and heads.heads[0].weight.shape == (6, 12)
    assert (heads.heads[0].bias == 0).all()
    mask = lengths_mask([5, 3], 5)
    student = [torch.randn(2, 5, 12) for _ in layer_map]
    # A learnable target: the teacher is a fixed linear map of the student plus a little noise.
    teacher = [s @ torch.randn(12, 6) + 0.05 * torch.randn(2, 5, 6) for s in student]
    teacher = [poison_padding(t, mask) for t in teacher]

    total, per_pair = layerwise_loss(student, teacher, heads, mask, beta=1.0)
    assert len(per_pair) == 2
    assert_close(total, torch.stack(per_pair).mean())
    again, _ = projected_layerwise_loss(heads(student), teacher, mask, beta=1.0)  # the trainer's form
    assert_close(again, total, atol=0, rtol=0)
    before = total.item()

    opt = torch.optim.SGD(heads.parameters(), lr=0.05)
    opt.zero_grad()
    total.backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in heads.parameters())
    opt.step()
    after_one = layerwise_loss(student, teacher, heads, mask, beta=1.0)[0].item()
    assert after_one < before

    opt = torch.optim.Adam(heads.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        loss = layerwise_loss(student, teacher, heads, mask, beta=1.0)[0]
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * before


def test_projection_heads_accept_half_precision_and_check_count():
    heads = ProjectionHeads([(1, 1)], student_dim=4, teacher_dim=3)
    out = heads([torch.randn(1, 2, 4, dtype=torch.bfloat16)])
    assert out[0].dtype == torch.float32 and out[0].shape == (1, 2, 3)
    with pytest.raises(ValueError, match="expected 1 student states"):
        heads([torch.randn(1, 2, 4)] * 2)


# ------------------------------------------------------------------ response


def test_identical_logits_give_zero_kl():
    logits = torch.randn(2, 5, 50) * 3
    mask = lengths_mask([5, 2], 5)
    assert response_kl(logits, logits.clone(), mask, temperature=2.0).abs().item() < 1e-6


def test_kl_matches_reference_and_decreases_toward_teacher():
    teacher = torch.randn(2, 4, 30) * 2
    mask = lengths_mask([4, 3], 4)
    noise = torch.randn_like(teacher) * 2
    temp = 2.0

    kl = response_kl(teacher + noise, teacher, mask, temp)
    ref = F.kl_div(
        F.log_softmax((teacher + noise)[mask] / temp, -1), F.log_softmax(teacher[mask] / temp, -1),
        reduction="batchmean", log_target=True,
    ) * temp**2
    assert_close(kl, ref, atol=1e-5)

    values = [response_kl(teacher + a * noise, teacher, mask, temp).item() for a in (1.0, 0.5, 0.2, 0.05)]
    assert values[-1] > 0
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_kl_ignores_padding_and_detaches_teacher():
    s, t = torch.randn(2, 6, 20), torch.randn(2, 6, 20)
    mask = lengths_mask([6, 3], 6)
    clean = response_kl(s, t, mask, 2.0)
    s_bad = poison_padding(s, mask).requires_grad_(True)
    t_bad = poison_padding(t, mask).requires_grad_(True)
    dirty = response_kl(s_bad, t_bad, mask, 2.0)
    assert_close(dirty, clean)
    dirty.backward()
    assert t_bad.grad is None
    assert torch.isfinite(s_bad.grad).all() and (s_bad.grad[~mask] == 0).all()


def test_kl_with_zero_mass_teacher_tokens_is_finite():
    t = torch.randn(1, 2, 10)
    t[..., :3] = float("-inf")
    s = torch.randn(1, 2, 10)
    assert torch.isfinite(response_kl(s, t, torch.ones(1, 2, dtype=torch.bool), 1.0))


def test_response_ce_matches_cross_entropy_on_valid_tokens():
    logits = torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    mask = lengths_mask([5, 2], 5)
    labels_padded = torch.where(mask, labels, torch.full_like(labels, -100))
    ce = response_ce(poison_padding(logits, mask), labels_padded, mask)
    ref = F.cross_entropy(logits.flatten(0, 1), labels_padded.flatten(), ignore_index=-100)
    assert_close(ce, ref)


# --------------------------------------------------------------------- total


def test_total_loss_weights_and_skips_zero_weight_terms():
    terms = {"layer": torch.tensor(2.0), "kl": torch.tensor(3.0), "ce": torch.tensor(5.0)}
    cfg = DistillConfig(w_layer=0.5, w_kl=2.0, w_ce=0.1)
    assert_close(total_loss(terms, cfg), torch.tensor(0.5 * 2 + 2 * 3 + 0.1 * 5))

    nan_ce = dict(terms, ce=torch.tensor(float("nan")))
    out = total_loss(nan_ce, DistillConfig())  # w_ce = 0 by default
    assert torch.isfinite(out)
    assert_close(out, torch.tensor(5.0))
    # A zero-weight term may also be absent altogether.
    assert_close(total_loss({"kl": torch.tensor(3.0)}, DistillConfig(w_layer=0.0)), torch.tensor(3.0))


def test_total_loss_missing_or_unknown_term_is_an_error():
    with pytest.raises(ValueError, match="'kl' has weight"):
        total_loss({"layer": torch.tensor(1.0)}, DistillConfig())
    with pytest.raises(ValueError, match="unknown loss term"):
        total_loss({"layer": torch.tensor(1.0), "kl": torch.tensor(1.0), "kd": torch.tensor(1.0)}, DistillConfig())


# -------------------------------------------------------------------- config


def test_distill_config_json_round_trip_with_layer_map():
    data = json.loads(json.dumps({"w_ce": 0.5, "layer_map": [[1, 2], [3, 4]], "kl_temperature": 1.5}))
    cfg = DistillConfig.from_dict(data)
    assert cfg.layer_map == ((1, 2), (3, 4))
    assert all(type(p) is tuple for p in cfg.layer_map)
    out = cfg.to_dict()
    assert out["layer_map"] == [[1, 2], [3, 4]]
    assert DistillConfig.from_dict(json.loads(json.dumps(out))) == cfg
    assert DistillConfig.from_dict(DistillConfig().to_dict()) == DistillConfig()
    assert DistillConfig().to_dict()["layer_map"] is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"w_layer": -1.0}, r"w_layer must be a finite number >= 0, got -1\.0"),
        ({"w_kl": float("nan")}, r"w_kl must be .* got nan"),
        ({"w_ce": -0.5}, r"w_ce .* got -0\.5"),
        ({"w_layer": 0.0, "w_kl": 0.0, "w_ce": 0.0}, r"at least one of w_layer, w_kl, w_ce, w_state, w_align, w_ctc, w_decode, w_count, w_tokens, w_read, w_slot_kl must be > 0"),
        ({"beta": -0.1}, r"beta must be .* got -0\.1"),
        ({"kl_temperature": 0.0}, r"kl_temperature must be > 0, got 0\.0"),
        ({"kl_temperature": -2.0}, r"kl_temperature must be > 0, got -2\.0"),
        ({"layer_map": [[0, 1]]}, r"\[0, 1\].*must be >= 1"),
        ({"layer_map": [[1, -3]]}, r"\[1, -3\].*must be >= 1"),
        ({"layer_map": [[1, 2, 3]]}, r"pair, got \[1, 2, 3\]"),
        ({"layer_map": [[1, 2.5]]}, r"two integers, got \[1, 2\.5\]"),
        ({"layer_map": []}, r"must not be empty"),
        ({"layer_map": "1,2"}, r"list of \[student_layer, teacher_layer\] pairs, got '1,2'"),
        ({"w_state": -1.0}, r"w_state must be a finite number >= 0, got -1\.0"),
        ({"state_layers": [0, 2]}, r"state_layers must be a non-empty list of 1-based layer numbers"),
        ({"state_layers": []}, r"state_layers must be a non-empty list"),
        ({"w_ctc": -1.0}, r"w_ctc must be a finite number >= 0, got -1\.0"),
        ({"ctc_layer": -1}, r"ctc_layer must be a hidden_states index >= 0 \(or null\), got -1"),
        ({"w_decode": -1.0}, r"w_decode must be a finite number >= 0, got -1\.0"),
        ({"w_layer": 0.0, "w_decode": 1.0}, r"w_decode reads the layer-wise term's projection head: it needs w_layer > 0"),
    ],
)
def test_distill_config_validation_names_the_bad_value(kwargs, match):
    with pytest.raises(AuraError, match=match):
        DistillConfig(**kwargs)


def test_text_state_loss_is_zero_for_equal_states_and_ignores_padding():
    torch.manual_seed(0)
    a = [torch.randn(2, 5, 8) for _ in range(3)]
    mask = torch.tensor([[False, False, True, True, True], [True] * 5])
    assert float(text_state_loss(a, [x.clone() for x in a], mask, 1.0)) == pytest.approx(0.0, abs=1e-6)
    b = [x.clone() for x in a]
    b[1][0, :2] = float("nan")  # padding holds garbage: it must not count
    assert float(text_state_loss(a, b, mask, 1.0)) == pytest.approx(0.0, abs=1e-6)
    b[2][1, 4] = torch.randn(8)  # one real position differs in one of three layers
    expected = float(layer_alignment_loss(a[2], b[2], mask, 1.0)) / 3
    assert float(text_state_loss(a, b, mask, 1.0)) == pytest.approx(expected, rel=1e-5) and expected > 0
    with pytest.raises(ValueError, match="2 student layers but 3 base layers"):
        text_state_loss(a[:2], a, mask, 1.0)


def test_monotonic_match_soft_min_lies_below_the_best_alignment_by_at_most_its_entropy():
    # The documented bound: hard - gamma * log(alignments) / tokens <= soft <= hard; with many
    # free positions the soft value of unrelated states can go below 0.
    torch.manual_seed(1)
    t_len, n, gamma = 12, 3, 0.1
    student, text = torch.randn(1, t_len, 16), torch.randn(1, n, 16)
    s_mask, t_mask = torch.ones(1, t_len, dtype=torch.bool), torch.ones(1, n, dtype=torch.bool)
    s = F.normalize(F.layer_norm(student, (16,)), dim=-1)
    x = F.normalize(F.layer_norm(text, (16,)), dim=-1)
    cost = 1 - (s @ x.transpose(1, 2))[0]
    hard = min(float(cost[i, 0] + cost[j, 1] + cost[k, 2]) for i, j, k in itertools.combinations(range(t_len), 3)) / n
    soft = float(monotonic_match_loss(student, text, s_mask, t_mask, gamma=gamma))
    slack = gamma * math.log(math.comb(t_len, n)) / n
    assert hard - slack - 1e-5 <= soft <= hard + 1e-5
    assert soft < hard - 0.01  # the soft-min is strictly below: every alignment counts


def test_monotonic_match_finds_the_tokens_in_order_among_free_positions():
    torch.manual_seed(0)
    text = torch.randn(2, 3, 16)
    student = torch.randn(2, 8, 16)
    student[:, 1], student[:, 4], student[:, 6] = text[:, 0], text[:, 1], text[:, 2]
    s_mask, t_mask = torch.ones(2, 8, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    aligned = float(monotonic_match_loss(student, text, s_mask, t_mask, gamma=0.01))
    swapped = student.clone()
    swapped[:, 1], swapped[:, 6] = text[:, 2], text[:, 0]  # the same states, out of order
    assert aligned == pytest.approx(0.0, abs=1e-3)
    assert float(monotonic_match_loss(swapped, text, s_mask, t_mask, gamma=0.01)) > 0.3
    # padding: positions past a row's length and text tokens past its count do not count
    s_mask[1, 7], t_mask[1, 2] = False, False
    padded = student.clone()
    padded[1, 7] = float("nan")
    assert float(monotonic_match_loss(padded, text, s_mask, t_mask, gamma=0.01)) == pytest.approx(0.0, abs=1e-3)
    grad_in = student.clone().requires_grad_(True)
    monotonic_match_loss(grad_in, text + 0.1 * torch.randn_like(text), s_mask, t_mask, 0.1).backward()
    assert torch.isfinite(grad_in.grad).all() and grad_in.grad.abs().sum() > 0


def test_distill_config_unknown_field_is_refused():
    with pytest.raises(AuraError, match="unknown field"):
        DistillConfig.from_dict({"w_kd": 1.0})


def test_token_ctc_head_rewards_states_that_spell_the_targets_in_order():
    from aura_model.distill import TokenCTCHead

    torch.manual_seed(0)
    table = torch.randn(12, 16)
    head = TokenCTCHead(table, blank_id=0, scale=20.0)
    frames = [0, 3, 3, 0, 5, 7, 7, 0]  # blank, 3 3, blank, 5, 7 7, blank -> spells 3 5 7
    states = table[frames].unsqueeze(0).repeat(2, 1, 1) * 4.0  # cosine ignores the scale of a state
    mask = torch.ones(2, 8, dtype=torch.bool)

    def ctc(*args) -> float:
        return float(head(*args).detach())

    good = ctc(states, mask, [[3, 5, 7], [3, 5, 7]])
    wrong = ctc(states, mask, [[7, 5, 3], [7, 5, 3]])
    assert good < 0.5 and wrong > good + 5
    # a row without targets does not count; padded frames past a row's length do not either
    assert ctc(states, mask, [[3, 5, 7], []]) == pytest.approx(good, rel=1e-5)
    padded = torch.cat([states, torch.randn(2, 3, 16)], 1)
    pmask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    assert ctc(padded, pmask, [[3, 5, 7], [3, 5, 7]]) == pytest.approx(good, rel=1e-4)
    assert ctc(states, mask, [[], []]) == 0.0
    x = torch.randn(2, 8, 16, requires_grad=True)
    head(x, mask, [[3, 5, 7], [4]]).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 and head.table.grad is None


def test_ctc_layer_defaults_to_the_top_mapped_student_layer():
    assert DistillConfig(w_ctc=1).resolve_ctc_layer(4, [(1, 2), (3, 4)]) == 3
    assert DistillConfig(w_ctc=1).resolve_ctc_layer(4, []) == 2  # no layer map: the middle
    assert DistillConfig(w_ctc=1).resolve_ctc_layer(1, []) == 1
    assert DistillConfig(w_ctc=1, ctc_layer=0).resolve_ctc_layer(4, [(1, 2)]) == 0  # the audio embedding's output
    with pytest.raises(AuraError, match=r"ctc_layer 5: the student LLM has 4 layers \(valid: 0\.\.4\)"):
        DistillConfig(w_ctc=1, ctc_layer=5).resolve_ctc_layer(4, [])


# ------------------------------------------------------------------ the teacher-decoder term
def tiny_whisper(seed: int = 0):
    from transformers import WhisperForConditionalGeneration

    from aura_model.testing import tiny_whisper_config

    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(tiny_whisper_config(d_model=32, layers=1, vocab_size=20)).eval()


def reference_decoder_ce(model, states: torch.Tensor, lengths: list[int], targets: list[list[int]]) -> float:
    """The same cross-entropy, one clip at a time through the stock model with labels (token-weighted mean)."""
    total, count = 0.0, 0
    for b, (n, ids) in enumerate(zip(lengths, targets)):
        if len(ids) < 2:
            continue
        out = model(encoder_outputs=(states[b:b + 1, :n],), decoder_input_ids=torch.tensor([ids[:-1]]),
                    labels=torch.tensor([ids[1:]]))
        logits = out.logits[0]
        total += float(F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))
        count += len(ids) - 1
    return total / count


@pytest.mark.parametrize("batched", [True, False], ids=["one-masked-call", "a-call-per-length"])
def test_teacher_decoder_loss_is_the_stock_decoders_cross_entropy_on_each_clips_own_positions(batched):
    from aura_model.distill import TeacherDecoderLoss

    model = tiny_whisper()
    term = TeacherDecoderLoss(model.model.decoder, model.proj_out, pad_id=0)
    assert term.batched  # Whisper's decoder layers take an encoder mask
    term.batched = batched  # the path for a decoder whose layers take none
    torch.manual_seed(1)
    states = torch.randn(4, 7, 32)
    lengths = [7, 4, 4, 6]  # two rows share a length: one call; the rest each alone
    mask = lengths_mask(lengths, 7)
    targets = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 11, 2], [1, 3, 2]]
    got = float(term(states, mask, targets))
    assert got == pytest.approx(reference_decoder_ce(model, states, lengths, targets), rel=1e-5)
    # what lies past a clip's own positions is never read: garbage there changes nothing
    noisy = torch.where(mask.unsqueeze(-1), states, torch.full_like(states, 1e3))
    assert float(term(noisy, mask, targets)) == pytest.approx(got, rel=1e-5)
    # other words cost more than a random decoder's average; rows without targets do not count
    assert float(term(states, mask, [[1, 5, 6, 2], [], [], []])) == pytest.approx(
        reference_decoder_ce(model, states, lengths, [[1, 5, 6, 2], [], [], []]), rel=1e-5)
    assert float(term(states, mask, [[], [], [], []])) == 0.0


def test_teacher_decoder_loss_trains_the_states_not_the_frozen_decoder():
    from aura_model.distill import TeacherDecoderLoss

    model = tiny_whisper()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    term = TeacherDecoderLoss(model.model.decoder, model.proj_out, pad_id=0)
    term.train()  # a student's .train() must not switch the frozen decoder to training (dropout)
    assert not term.training and not term.decoder.training
    assert all(not p.requires_grad for p in term.parameters())
    torch.manual_seed(2)
    states = torch.randn(2, 5, 32, requires_grad=True)
    mask = lengths_mask([5, 3], 5)
    targets = [[1, 4, 4, 2], [1, 9, 2]]
    opt = torch.optim.Adam([states], lr=0.1)
    first = float(term(states, mask, targets).detach())
    for _ in range(30):
        opt.zero_grad()
        term(states, mask, targets).backward()
        opt.step()
    # the states learn to be read as the transcript (slowly: a random decoder's cross-attention is weak)
    assert float(term(states, mask, targets).detach()) < first - 0.1
    assert all(p.grad is None for p in term.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_decode_pair_is_the_pair_ending_at_the_teachers_top_layer():
    cfg = DistillConfig(w_decode=1.0)
    assert cfg.resolve_decode_pair([(1, 2), (2, 3)], 3) == 1
    assert cfg.resolve_decode_pair([(2, 3), (1, 1), (4, 3)], 3) == 2  # the highest student layer among several
    with pytest.raises(AuraError, match=r"no pair of the layer map \[\[1, 1\], \[2, 2\]\] ends there; add one, e.g. \[2, 3\]"):
        cfg.resolve_decode_pair([(1, 1), (2, 2)], 3)
    assert DistillConfig(w_decode=1.0, w_kl=0).needs_transcript and not DistillConfig(w_decode=1.0, w_kl=0).needs_response


def test_decoder_targets_run_from_the_start_token_to_the_end_token():
    from aura_model.train.teacher import DecoderTargets
    from aura_model.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    words = tok.encode("hello world", add_special_tokens=False)
    targets = DecoderTargets(tok, start_id=1, eos_id=2, max_len=64)
    assert targets("hello world") == [1] + words + [2]
    assert targets("") == [] and targets("   ") == []
    short = DecoderTargets(tok, start_id=1, eos_id=2, max_len=3)("hello world")
    assert len(short) == 3 and short[0] == 1 and short[-1] == 2
