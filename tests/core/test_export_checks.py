"""The export checks both front ends share, on numpy arrays: the int8 zero check, accuracy, test-set collection."""

import numpy as np
import pytest

from tfimp.core import exports


def _pruned(shape, seed, fraction=0.8):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape).astype("float32")
    values[rng.random(shape) < fraction] = 0.0
    return values


def test_each_kernel_is_found_in_the_layout_tflite_stores_it_in():
    conv, dense, depthwise = _pruned((3, 3, 4, 6), 0), _pruned((24, 5), 1), _pruned((3, 3, 4, 2), 2)
    kernels = [("conv", conv), ("dense", dense), ("depthwise", depthwise)]
    # TFLite's layouts: output channels first; a depthwise kernel as (1, h, w, in * multiplier); in file order.
    stored = [("d", dense.T == 0), ("dw", depthwise.reshape(1, 3, 3, 8) == 0), ("c", np.moveaxis(conv, -1, 0) == 0)]
    zeros, total = exports.check_zeros_kept("tflite_int8", kernels, stored)
    assert (zeros, total) == (sum(int((k == 0).sum()) for _, k in kernels), conv.size + dense.size + depthwise.size)
    # A surviving weight that rounded to zero counts in the file's zeros; it is not an error.
    rounded = [(name, mask.copy()) for name, mask in stored]
    rounded[0][1][np.unravel_index(np.argmax(dense.T != 0), dense.T.shape)] = True
    assert exports.check_zeros_kept("tflite_int8", kernels, rounded) == (zeros + 1, total)
    # An unpruned kernel of the same shape, listed first, does not take the pruned one's tensor.
    unpruned = np.ones_like(dense)
    assert exports.check_zeros_kept("tflite_int8", [("unpruned", unpruned), ("dense", dense)],
                                    [("d", dense.T == 0), ("u", unpruned.T == 0)]) == (int((dense == 0).sum()), 240)


def test_a_pruned_weight_that_is_not_an_int8_zero_is_an_error_naming_the_kernel():
    dense = _pruned((24, 5), 1)
    lost = dense.T == 0
    lost[np.unravel_index(np.argmax(lost), lost.shape)] = False  # one pruned weight stored as a non-zero integer
    with pytest.raises(exports.ExportMismatchError, match=r"tflite_int8 export lost pruned weights: .*'fc1' \(24, 5\)"):
        exports.check_zeros_kept("tflite_int8", [("fc1", dense)], [("w", lost)])
    with pytest.raises(exports.ExportMismatchError, match="'fc1_copy'"):  # one stored tensor stands for one kernel
        exports.check_zeros_kept("tflite_int8", [("fc1", dense), ("fc1_copy", dense.copy())], [("w", dense.T == 0)])


def test_accuracy_takes_class_indices_or_one_hot_labels():
    outputs = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 1.0]])
    assert exports.accuracy(outputs, np.array([1, 0, 1, 1])) == 0.75
    assert exports.accuracy(outputs, np.eye(2)[[1, 0, 1, 1]]) == 0.75
    assert exports.accuracy(outputs, np.array([[1], [0], [1], [1]])) == 0.75
    with pytest.raises(ValueError, match=r"one output per class.*\(4, 1\)"):
        exports.accuracy(outputs[:, :1], np.array([1, 0, 1, 1]))


def test_take_examples_stops_at_a_count_or_a_size():
    batches = [(np.full((4, 2), i, "float32"), np.full(4, i)) for i in range(5)]
    x, y = exports.take_examples(batches, limit=6)
    assert x.shape == (6, 2) and y.tolist() == [0, 0, 0, 0, 1, 1]
    x, _ = exports.take_examples(iter(batches), max_bytes=10 * 8)  # 8 bytes an example
    assert len(x) == 10
    assert len(exports.take_examples(batches)[0]) == 20
    assert len(exports.take_examples(batches, max_bytes=1)[0]) == 1  # at least one example
    with pytest.raises(ValueError, match="no examples"):
        exports.take_examples([])


def test_in_batches_concatenates_the_calls():
    calls = []
    out = exports.in_batches(lambda x: calls.append(len(x)) or x * 2, np.arange(7.0), batch_size=3)
    assert calls == [3, 3, 1] and out.tolist() == [0, 2, 4, 6, 8, 10, 12]
