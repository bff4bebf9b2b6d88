"""Structured sparsity in the core: the names, the registry, the selection in units, and the counts (numpy only)."""

import re
import warnings

import numpy as np
import pytest

from tfimp import structures
from tfimp.core import during_training, masking, report, selection
from tfimp.core.plan import Plan


def _kernels(seed=0, shapes=((3, 3, 8, 6), (12, 5))):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype("float32") for shape in shapes]


def _ones(weights):
    return [np.ones_like(w) for w in weights]


# -- names and the registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, canonical, kind", [
    ("unstructured", "unstructured", structures.Unstructured), ("2:4", "2:4", structures.NOfM),
    (" 1:8 ", "1:8", structures.NOfM), ("block:1x4", "block:1x4", structures.Blocks),
    ("block:16x1", "block:16x1", structures.Blocks), ("channels", "channels", structures.Channels),
    ("channels:l2", "channels", structures.Channels), ("channels:L1", "channels:l1", structures.Channels)])
def test_names_parse_to_their_structure(name, canonical, kind):
    form = structures.get(name)
    assert isinstance(form, kind) and form.name == canonical == structures.name_of(name)
    assert structures.get(form) is form
    assert form.structured == (canonical != "unstructured")


@pytest.mark.parametrize("name, message", [
    ("4:4", "structure '4:4': N:M structure keeps N of every M weights, so N < M; got 4:4"),
    ("0:4", "structure '0:4': N:M structure: N must be an integer >= 1, got 0"),
    ("block:0x4", "structure 'block:0x4': block rows must be an integer >= 1, got 0"),
    ("block:4", "a block structure is written 'block:RxC' with integers R, C >= 1, e.g. 'block:1x4'; got 'block:4'"),
    ("blocks:1x4", "unknown structure 'blocks:1x4'; the forms are 'unstructured', 'N:M' (e.g. '2:4', 1 <= N < M), "
                   "'block:RxC' (e.g. 'block:1x4') or 'channels' ('channels:l1' scores by L1 norm)"),
    ("2:4:8", "unknown structure '2:4:8'"),
    ("unstructured:1", "structure 'unstructured' takes no argument"),
    ("channels:l3", "structure 'channels:l3': a channels structure is written 'channels' (L2 norm), 'channels:l2' "
                    "or 'channels:l1'; got 'channels:l3'"),
])
def test_a_bad_name_is_named_with_the_forms_there_are(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        structures.get(name)
    with pytest.raises(TypeError, match="structure must be a name"):
        structures.get(4)


def test_a_new_family_is_one_registry_entry():
    class Columns(structures.PooledStructure):
        """Whole output columns (the last axis), scored by mean |w|: what a channels structure would be."""

        name, unit = "columns", "columns"

        def unit_shape(self, shape):
            return (int(shape[-1]),)

        def pool(self, values):
            return np.abs(values).reshape(-1, np.shape(values)[-1]).mean(axis=0)

        def alive_units(self, mask, name):
            return (np.reshape(mask, (-1, np.shape(mask)[-1])) != 0).any(axis=0)

        def expand(self, units, shape):
            return np.broadcast_to(units, shape)

    structures.STRUCTURES.register("columns", lambda argument: Columns())
    try:
        weights = _kernels()
        step = masking.select_masks(["a", "b"], weights, _ones(weights), 0.5, structure="columns")
        for keep in step.keep:
            columns = keep.reshape(-1, keep.shape[-1])
            assert np.all((columns == 0).all(axis=0) | (columns == 1).all(axis=0))  # whole columns
        assert sum((k.reshape(-1, k.shape[-1]) == 0).all(axis=0).sum() for k in step.keep) == round(0.5 * 11)
    finally:
        structures.STRUCTURES.unregister("columns")
    with pytest.raises(ValueError, match="unknown structure 'columns'"):
        structures.get("columns")


# -- the selection -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_rows_select_exactly_k_lowest_each_pruned_first_ties_by_position(k):
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((500, 4)), 1)  # many ties
    scores[rng.random(scores.shape) < 0.15] = -np.inf
    dead = (scores == -np.inf).sum(axis=1)
    scores = scores[dead <= k] if k else scores[dead == 0]
    got = selection.select_lowest_in_rows(scores, k)
    for row, chosen in zip(scores, got):
        want = np.zeros(4, dtype=bool)
        want[np.argsort(row, kind="stable")[:k]] = True
        np.testing.assert_array_equal(chosen, want)


def _group_counts(keep, m):
    return np.count_nonzero(structures.get(f"1:{m}").groups(keep), axis=1)


def test_n_of_m_keeps_exactly_n_in_every_group_and_tightens_monotonically():
    weights = _kernels()
    first = masking.select_masks(["conv", "dense"], weights, _ones(weights), Plan(
        0.5, cycles=2, dense_epochs=1, retrain_epochs=1, structure="2:4").sparsity_after(1), structure="2:4")
    assert all(set(_group_counts(k, 4)) == {3} for k in first.keep)  # 3:4 after the first of two cycles
    second = masking.select_masks(["conv", "dense"], weights, first.keep, 0.5, structure="2:4")
    for keep_1, keep_2, weight in zip(first.keep, second.keep, weights):
        assert set(_group_counts(keep_2, 4)) == {2}
        assert np.all(keep_2 <= keep_1)  # never revived
        # in every group, the two kept weights are the group's two largest magnitudes
        groups, kept = structures.get("2:4").groups(np.abs(weight)), structures.get("2:4").groups(keep_2) != 0
        assert np.all(np.sort(groups, axis=1)[:, 2:].sum(axis=1) == (groups * kept).sum(axis=1))
    assert second.layer_sparsities == {"conv": 0.5, "dense": 0.5}
    assert structures.unit_sparsity("2:4", second.keep) == 0.5
    assert structures.unit_sparsity("2:4", first.keep) == 0.25


def test_n_of_m_leaves_a_kernel_without_whole_groups_dense_and_says_so():
    weights = _kernels(shapes=((3, 3, 3, 8), (8, 4)))
    with pytest.warns(UserWarning, match=re.escape("structure '2:4' leaves 1 kernels as they are (dense): their "
                                                   "input axis (the axis before the last) is not a multiple of 4: "
                                                   "['first (3, 3, 3, 8)']")):
        step = masking.select_masks(["first", "fc"], weights, _ones(weights), 0.5, structure="2:4")
    assert np.all(step.keep[0] == 1) and set(_group_counts(step.keep[1], 4)) == {2}
    assert structures.unit_sparsity("2:4", step.keep) == pytest.approx(16 / (216 + 32))
    with pytest.raises(ValueError, match=r"no kernel has a multiple of 4 there: \{'first': \(3, 3, 3, 8\)\}"):
        masking.select_masks(["first"], weights[:1], _ones(weights[:1]), 0.5, structure="2:4")


def test_n_of_m_refuses_more_than_its_pattern_and_masks_of_another_structure():
    weights = _kernels()
    with pytest.raises(ValueError, match=re.escape("structure '2:4' keeps 2 of every 4 weights, so it prunes to "
                                                   "sparsity at most 1 - 2/4 = 0.5; got 0.6")):
        masking.select_masks(["a", "b"], weights, _ones(weights), 0.6, structure="2:4")
    unstructured = masking.select_masks(["a", "b"], weights, _ones(weights), 0.5)
    with pytest.raises(ValueError, match="already has [34] weights pruned, and IMP never revives"):
        masking.select_masks(["a", "b"], weights, unstructured.keep, 0.5, structure="2:4")
    revived = masking.select_masks(["a", "b"], weights, unstructured.keep, 0.5, structure="2:4", allow_revival=True)
    assert all(set(_group_counts(k, 4)) == {2} for k in revived.keep)


@pytest.mark.parametrize("criterion", ["global", "uniform", "erk"])
def test_blocks_are_whole_and_their_count_exact(criterion):
    weights = _kernels(shapes=((3, 3, 8, 6), (12, 5), (7, 10)))  # edges: 5 and 7 rows / columns
    form = structures.get("block:2x4")
    step = masking.select_masks(["a", "b", "c"], weights, _ones(weights), 0.7, criterion, structure=form)
    units = [form.alive_units(k, name) for k, name in zip(step.keep, "abc")]  # raises unless whole blocks
    for keep, alive in zip(step.keep, units):
        np.testing.assert_array_equal(form.expand(alive, keep.shape), keep != 0)
    blocks = [u.size for u in units]
    pruned = [int(u.size - u.sum()) for u in units]
    if criterion == "global":
        assert sum(pruned) == round(0.7 * sum(blocks))
    elif criterion == "uniform":
        assert pruned == [round(0.7 * b) for b in blocks]
    assert step.layer_sparsities == {n: p / b for n, p, b in zip("abc", pruned, blocks)}
    assert structures.unit_sparsity(form, step.keep) == sum(pruned) / sum(blocks)


def test_blocks_score_by_the_mean_of_the_weights_they_hold():
    weight = np.ones((3, 8), np.float32)  # block:2x4 -> a 2x2 grid, the lower row of blocks cut to one row
    weight[:2, :4] = 0.9  # a whole block of 0.9: mean 0.9
    weight[2, 4:] = 0.8   # the edge block of one row: mean 0.8 (its sum, 3.2, would be the lowest of all)
    weight[2, :4] = 0.95
    step = masking.select_masks(["w"], [weight], _ones([weight]), 0.5, structure="block:2x4")
    np.testing.assert_array_equal(structures.get("block:2x4").alive_units(step.keep[0], "w"),
                                  [[False, True], [True, False]])


def test_block_1x1_is_unstructured_pruning_and_partial_blocks_are_refused():
    weights = _kernels(shapes=((12, 5), (6, 9)))
    for criterion in ("global", "uniform", "lamp"):
        plain = masking.select_masks(["a", "b"], weights, _ones(weights), 0.6, criterion)
        blocks = masking.select_masks(["a", "b"], weights, _ones(weights), 0.6, criterion, structure="block:1x1")
        for p, b in zip(plain.keep, blocks.keep):
            np.testing.assert_array_equal(p, b)
    with pytest.raises(ValueError, match="the mask of 'a' prunes parts of 1x4 blocks"):
        masking.select_masks(["a", "b"], weights, plain.keep, 0.7, structure="block:1x4")


def test_block_guard_and_reachability_count_blocks():
    weights = _kernels(shapes=((8, 8), (8, 8)))
    weights[0] *= 0.01  # alone, a global ranking would take every block of "a" first
    step = masking.select_masks(["a", "b"], weights, _ones(weights), 0.5, structure="block:4x4",
                                min_kept_per_layer=2)  # 4 blocks a layer, 2 kept each: 4 of 8 pruned at most
    assert step.layer_sparsities == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="keeps 4 of the model's 8 prunable 4x4 blocks"):
        masking.check_reachable([(8, 8), (8, 8)], 0.9, "global", 2, "block:4x4")


def test_block_guard_that_cannot_be_met_says_so_in_blocks():
    weights = _kernels(shapes=((8, 8), (8, 8)))
    with pytest.raises(ValueError, match="keeps 4 of 8 4x4 blocks, so at most sparsity 0.5000"):
        masking.select_masks(["a", "b"], weights, _ones(weights), 0.9, structure="block:4x4", min_kept_per_layer=2)


# -- plans, budgets and reports -------------------------------------------------------------------------------


def test_a_plan_takes_a_structure_and_an_n_of_m_plan_its_exact_target():
    plan = Plan(0.5, cycles=2, dense_epochs=1, retrain_epochs=1, structure=" 2:4")
    assert plan.structure == "2:4" and Plan.from_dict(plan.to_dict()) == plan
    assert [structures.get("2:4").pruned_per_group(plan.sparsity_after(c)) for c in (1, 2)] == [1, 2]
    assert "structure" not in Plan(0.5, cycles=2, dense_epochs=1, retrain_epochs=1).to_dict()
    with pytest.raises(ValueError, match=re.escape("structure '2:4' prunes to sparsity 1 - 2/4 = 0.5; give "
                                                   "target_sparsity=0.5, not 0.9")):
        Plan(0.9, cycles=2, dense_epochs=1, retrain_epochs=1, structure="2:4")
    with pytest.raises(ValueError, match="unknown structure 'blocks:2'"):
        Plan(0.9, cycles=2, dense_epochs=1, retrain_epochs=1, structure="blocks:2")
    assert Plan(0.9, cycles=3, dense_epochs=1, retrain_epochs=1, structure="block:1x4").to_dict()["structure"] \
        == "block:1x4"


def test_renda_cycles_map_to_n_of_m_steps_that_only_grow():
    plan = Plan.renda(0.5, dense_epochs=1, retrain_epochs=1, structure="2:4")
    per_group = [structures.get("2:4").pruned_per_group(plan.sparsity_after(c)) for c in range(1, plan.cycles + 1)]
    assert plan.cycles == 4 and per_group == [1, 1, 2, 2]


def test_a_during_training_budget_takes_a_structure_where_the_method_prunes_by_selection():
    common = dict(criterion="global", begin_fraction=None, end_fraction=None, frequency=None, str_init=-5.0,
                  str_weight_decay=0.0)
    gmp = during_training.budget("gmp", 0.5, 4, structure="2:4", **common)
    assert gmp.structure == "2:4" and gmp.identity(10)["structure"] == "2:4"
    assert "structure" not in during_training.budget("gmp", 0.5, 4, **common).identity(10)
    with pytest.raises(ValueError, match=r"method 'str' does not prune with tfimp's selection, so "
                                         r"structure='block:1x4' cannot apply to it; the methods that take a "
                                         r"structure: \['gmp', 'dpf', 'dnw', 'lc', 'gsm'\]"):
        during_training.budget("str", 0.5, 4, structure="block:1x4", **common)
    with pytest.raises(ValueError, match="give target_sparsity=0.5"):
        during_training.RampSteps(0.9, 0, 10, structure="2:4")


def test_the_report_counts_in_the_structure_and_an_unstructured_report_keeps_its_keys():
    weights = _kernels(shapes=((8, 4), (4, 2)))
    step = masking.select_masks(["fc1", "fc2"], weights, _ones(weights), 0.5, structure="2:4")

    def counted():
        return [report.CountedWeight(name, "dense", w, k, lambda: 1) for name, w, k in zip(("fc1", "fc2"), weights,
                                                                                          step.keep)]

    structured = report.build(counted(), 100, "2:4")
    assert [layer.unit_sparsity for layer in structured.layers] == [0.5, 0.5] and structured.unit_sparsity == 0.5
    values = structured.to_dict()
    assert values["structure"] == "2:4" and values["layers"][0]["unit_sparsity"] == 0.5
    assert report.ModelReport.from_dict(values).to_dict() == values
    assert "2:4" in structured.table().splitlines()[0]
    plain = report.build(counted(), 100).to_dict()
    assert "structure" not in plain and not {"units", "pruned_units", "unit_sparsity"} & set(plain["layers"][0])


def test_counts_in_units_on_stripped_zeros():
    kernel = np.zeros((8, 2), np.float32)
    kernel[[0, 1, 4, 5], :] = 1.0  # 2:4 in every group
    assert structures.unit_sparsity("2:4", [kernel]) == 0.5
    assert structures.unit_sparsity("3:4", [kernel]) == 0.25  # at most M - N = 1 zero per group counts
    assert structures.unit_sparsity("block:2x2", [kernel]) == 0.5
    assert structures.unit_sparsity("block:4x1", [kernel]) == 0.0
    with pytest.raises(ValueError, match="over the prunable weights only"):
        structures.for_sparsity("all", "2:4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert structures.layer_sparsities([("k", kernel)], "unstructured") == {"k": 0.5}


# -- channels ------------------------------------------------------------------------------------------------


def _dead_columns(keep):
    columns = np.reshape(keep, (-1, np.shape(keep)[-1]))
    dead, alive = (columns == 0).all(axis=0), (columns != 0).all(axis=0)
    assert np.all(dead | alive)  # whole channels only
    return dead


def _filter_weights(weights, dead):
    """Without a graph a pruned channel costs its filter: the weights of its column."""
    return [int(d.sum()) * (w.size // w.shape[-1]) for w, d in zip(weights, dead)]


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("criterion", ["global", "uniform"])
def test_channels_prune_whole_columns_of_lowest_norm_until_half_the_weights(norm, criterion):
    weights = _kernels(shapes=((3, 3, 4, 10), (40, 6)))  # 360 weights, 36 a filter; 240 weights, 40 a filter
    name = f"channels:{norm}"
    step = masking.select_masks(["conv", "fc"], weights, _ones(weights), 0.5, criterion, structure=name)
    dead = [_dead_columns(k) for k in step.keep]
    removed = _filter_weights(weights, dead)
    order = {"l2": 2, "l1": 1}[norm]
    norms = [np.linalg.norm(w.reshape(-1, w.shape[-1]), ord=order, axis=0) for w in weights]
    if criterion == "global":
        pruned = np.concatenate([n[d] for n, d in zip(norms, dead)])
        kept = np.concatenate([n[~d] for n, d in zip(norms, dead)])
        assert pruned.max() <= kept.min()
        last = 36 if pruned.max() in norms[0][dead[0]] else 40  # the filter pruned last
        assert sum(removed) >= 300 > sum(removed) - last  # the smallest prefix reaching round(0.5 * 600)
    else:
        assert [d.sum() for d in dead] == [5, 3]  # uniform's half of each layer's channels: 180 + 120 weights
        for n, d in zip(norms, dead):
            assert n[d].max() <= n[~d].min()
    assert step.layer_sparsities == {"conv": removed[0] / 360, "fc": removed[1] / 240}
    assert structures.unit_sparsity(name, step.keep) == sum(removed) / 600
    later = masking.select_masks(["conv", "fc"], weights, step.keep, 0.75, criterion, structure=name)
    assert all(np.all(new <= old) for new, old in zip(later.keep, step.keep))  # never revived
    later_dead = [_dead_columns(k) for k in later.keep]
    if criterion == "global":
        assert sum(_filter_weights(weights, later_dead)) >= 450
    else:
        # uniform allots 8 of 10 and 5 of 6 channels; one factor scales both shares, the smallest reaching 450
        # weights: 0.9 (7.2 -> 7 and 4.5 -> 5 channels: 252 + 200 weights; 0.89 gives 4.45 -> 4: 412)
        assert [d.sum() for d in later_dead] == [7, 5]


def test_l1_and_l2_channel_scores_can_disagree():
    column_a = np.array([1.0, 1.0, 1.0, 1.0])  # L1 4, L2 2
    column_b = np.array([3.0, 0.0, 0.0, 0.0])  # L1 3, L2 3
    weight = np.stack([column_a, column_b], axis=1).astype("float32")
    l2 = masking.select_masks(["fc"], [weight], _ones([weight]), 0.5, structure="channels")
    l1 = masking.select_masks(["fc"], [weight], _ones([weight]), 0.5, structure="channels:l1")
    np.testing.assert_array_equal(_dead_columns(l2.keep[0]), [True, False])
    np.testing.assert_array_equal(_dead_columns(l1.keep[0]), [False, True])


def test_channels_refuse_masks_of_another_structure():
    weights = _kernels()
    unstructured = masking.select_masks(["a", "b"], weights, _ones(weights), 0.5)
    with pytest.raises(ValueError, match="prunes parts of output channels"):
        masking.select_masks(["a", "b"], weights, unstructured.keep, 0.6, structure="channels")


def test_joined_channels_are_scored_together_and_pruned_whole():
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=(9, 6)).astype("float32"), rng.normal(size=(4, 6)).astype("float32"),
               rng.normal(size=(6, 5)).astype("float32")]
    groups = [np.arange(6), np.arange(6), None]  # the two first kernels' channels meet in an Add
    step = masking.select_masks(["a", "b", "c"], weights, _ones(weights), 0.5, structure="channels",
                                unit_groups=groups)
    dead = [_dead_columns(k) for k in step.keep]
    np.testing.assert_array_equal(dead[0], dead[1])  # together
    norms = [np.linalg.norm(w, axis=0) for w in weights]
    joint = np.sqrt(norms[0] ** 2 + norms[1] ** 2)
    scores = np.concatenate([joint[dead[0]], norms[2][dead[2]]])  # what went scores below what stayed,
    stayed = [joint[~dead[0]], norms[2][~dead[2]]]  # but for a kernel's last channel, which is never pruned
    assert all(d.sum() < d.size for d in dead)
    assert scores.max() <= np.concatenate([s for s in stayed if s.size > 1]).min()
    removed = sum(_filter_weights(weights, dead))  # a joined pair costs 9 + 4 weights, a channel of c 6
    assert 54 <= removed < 54 + 13  # round(0.5 * 108) weights, passed by less than a group's
    later = masking.select_masks(["a", "b", "c"], weights, step.keep, 0.7, structure="channels", unit_groups=groups)
    assert all(np.all(new <= old) for new, old in zip(later.keep, step.keep))
    np.testing.assert_array_equal(_dead_columns(later.keep[0]), _dead_columns(later.keep[1]))
