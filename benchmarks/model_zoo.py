"""tfimp on public architectures nobody here wrote, side by side with tfmot's own ``prune_low_magnitude``.

For each model: ``tfimp.wrap``, ``tfimp.prune(model, 0.9)``, a few training
steps, ``tfimp.strip``, save as ``.keras``, and a reload in a fresh process
with plain tf_keras (and this file's custom classes) that compares the
predictions. The same model goes through tfmot's ``prune_low_magnitude``
with ``ConstantSparsity(0.9)`` and ``UpdatePruningStep`` for the same steps.
Printed per model (and written to ``model_zoo.json`` in ``--out``):

* share of all parameters pruned (tfimp / tfmot), or tfmot's refusal;
* exact: tfimp pruned exactly round(0.9 N) of its N prunable weights;
* zeros kept: every pruned weight still exactly 0 after training;
* reload: the largest prediction difference of the reloaded ``.keras``;
* emptied: layers the global 90% step left with no weight (untrained
  models: see docs/concepts/wrapping.md on pruning before training).

    python benchmarks/model_zoo.py --out bench_out/model_zoo

About 5 minutes on 2 CPU cores (inputs are small: 64x64 images). ``--models``
picks some (the tests run two).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import tfimp  # noqa: E402
from tfimp import keras, tf, wrapping  # noqa: E402
from tfimp.tf_keras import tfmot_glue

SPARSITY = 0.9
IMAGE = (64, 64, 3)
TOKENS, VOCABULARY = 16, 200


# --------------------------------------------------------------------------
# Custom layers of the kinds users write (registered so a fresh process can load them)
# --------------------------------------------------------------------------


@keras.utils.register_keras_serializable(package="model_zoo")
class TransformerBlock(keras.layers.Layer):
    """keras.io's text-classification Transformer block (layers held as attributes)."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim, self.rate = embed_dim, num_heads, ff_dim, rate
        self.att = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([keras.layers.Dense(ff_dim, activation="relu"), keras.layers.Dense(embed_dim)])
        self.layernorm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = keras.layers.Dropout(rate)
        self.dropout2 = keras.layers.Dropout(rate)

    def call(self, inputs, training=None):
        attention = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attention)
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1), training=training))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "rate": self.rate}


@keras.utils.register_keras_serializable(package="model_zoo")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """keras.io's token + position embedding (two Embedding layers in a custom layer)."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = keras.layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = tf.range(start=0, limit=tf.shape(x)[-1], delta=1)
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen, "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim}


@keras.utils.register_keras_serializable(package="model_zoo")
class PatchEncoder(keras.layers.Layer):
    """A ViT's patch projection (a strided convolution) plus learned positions."""

    def __init__(self, patch, dim, patches, **kwargs):
        super().__init__(**kwargs)
        self.patch, self.dim, self.patches = patch, dim, patches
        self.projection = keras.layers.Conv2D(dim, patch, strides=patch)
        self.position = keras.layers.Embedding(patches, dim)

    def call(self, images):
        x = self.projection(images)
        x = tf.reshape(x, (-1, self.patches, self.dim))
        return x + self.position(tf.range(self.patches))

    def get_config(self):
        return {**super().get_config(), "patch": self.patch, "dim": self.dim, "patches": self.patches}


# --------------------------------------------------------------------------
# The zoo: name -> (builder, input maker)
# --------------------------------------------------------------------------


def _images(n):
    return np.random.default_rng(0).normal(size=(n, *IMAGE)).astype("float32")


def _tokens(n):
    return np.random.default_rng(0).integers(0, VOCABULARY, size=(n, TOKENS)).astype("int32")


def _application(name):
    return lambda: getattr(keras.applications, name)(weights=None, input_shape=IMAGE, classes=10)


#: keras-cv's EfficientNetV2-B0 architecture, written out (its preset downloads the config from Kaggle); the
#: block table of the EfficientNetV2 paper (Tan & Le 2021, arXiv:2104.00298), as keras.applications has it.
_EFFICIENTNET_V2_B0 = dict(
    include_rescaling=True, width_coefficient=1.0, depth_coefficient=1.0, stackwise_kernel_sizes=[3] * 6,
    stackwise_num_repeats=[1, 2, 2, 3, 5, 8], stackwise_input_filters=[32, 16, 32, 48, 96, 112],
    stackwise_output_filters=[16, 32, 48, 96, 112, 192], stackwise_expansion_ratios=[1, 4, 4, 4, 6, 6],
    stackwise_squeeze_and_excite_ratios=[0, 0, 0, 0.25, 0.25, 0.25], stackwise_strides=[1, 2, 2, 2, 1, 2],
    stackwise_conv_types=["fused", "fused", "fused", "unfused", "unfused", "unfused"])


def _keras_cv_efficientnet_v2_b0():
    import keras_cv

    backbone = keras_cv.models.EfficientNetV2Backbone(input_shape=IMAGE, **_EFFICIENTNET_V2_B0)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(backbone.output))
    return keras.Model(backbone.input, outputs, name="keras_cv_efficientnetv2_b0")


def _transformer():
    inputs = keras.Input((TOKENS,), dtype="int32")
    x = TokenAndPositionEmbedding(TOKENS, VOCABULARY, 32)(inputs)
    x = TransformerBlock(32, 2, 32)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(20, activation="relu")(keras.layers.Dropout(0.1)(x))
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="text_transformer")


def _lstm_gru():
    inputs = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 32)(inputs)
    x = keras.layers.GRU(32, return_sequences=True)(x)
    x = keras.layers.LSTM(32)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="embedding_gru_lstm")


def _bidirectional():
    inputs = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 32)(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(32, return_sequences=True))(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(16))(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(16))(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="bidirectional_rnn")


def _conv1d_text():
    inputs = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 32)(inputs)
    x = keras.layers.Conv1D(64, 3, activation="relu")(x)
    x = keras.layers.SeparableConv1D(64, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="conv1d_text")


def _conv3d():
    inputs = keras.Input((8, 16, 16, 1))
    x = keras.layers.Conv3D(16, 3, activation="relu")(inputs)
    x = keras.layers.Conv3DTranspose(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="conv3d_video")


def _vit():
    patch, dim = 8, 32
    patches = (IMAGE[0] // patch) * (IMAGE[1] // patch)
    inputs = keras.Input(IMAGE)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = PatchEncoder(patch, dim, patches)(x)
    for _ in range(2):
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + keras.layers.MultiHeadAttention(2, dim // 2)(y, y)
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + keras.layers.Dense(dim)(keras.layers.Dense(2 * dim, activation="gelu")(y))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="small_vit")


def _shared_and_nested():
    inner_input = keras.Input((16,))
    inner = keras.Model(inner_input, keras.layers.Dense(16, activation="relu")(inner_input), name="inner")
    shared = keras.layers.Dense(16, name="shared")
    first, second = keras.Input((16,)), keras.Input((16,))
    merged = keras.layers.Concatenate()([shared(first), shared(second), inner(first)])
    return keras.Model([first, second], keras.layers.Dense(2)(merged), name="shared_and_nested")


def _normalized_mlp():
    inputs = keras.Input((16,))
    x = keras.layers.Normalization(mean=0.0, variance=1.0)(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="normalization_mlp")


ZOO = {
    "MobileNetV2": (_application("MobileNetV2"), _images),
    "EfficientNetB0": (_application("EfficientNetB0"), _images),
    "ResNet50": (_application("ResNet50"), _images),
    "DenseNet121": (_application("DenseNet121"), _images),
    "keras_cv_ResNet18V2": (lambda: tfimp.models.build("kcv_resnet18_v2", num_classes=10, input_shape=IMAGE), _images),
    "keras_cv_EfficientNetV2B0": (_keras_cv_efficientnet_v2_b0, _images),
    "text_transformer": (_transformer, _tokens),
    "embedding_gru_lstm": (_lstm_gru, _tokens),
    "bidirectional_rnn": (_bidirectional, _tokens),
    "conv1d_text": (_conv1d_text, _tokens),
    "conv3d_video": (_conv3d, lambda n: np.random.default_rng(0).normal(size=(n, 8, 16, 16, 1)).astype("float32")),
    "small_vit": (_vit, _images),
    "shared_and_nested": (_shared_and_nested,
                          lambda n: [np.random.default_rng(s).normal(size=(n, 16)).astype("float32") for s in (0, 1)]),
    "normalization_mlp": (_normalized_mlp, lambda n: np.random.default_rng(0).normal(size=(n, 16)).astype("float32")),
}


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def _labels(model, n):
    return np.random.default_rng(1).integers(0, int(model.outputs[0].shape[-1]), n)


def _train(model, x, y, steps, callbacks=()):
    # keras.applications end with a softmax; the other models output logits.
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # a pruning wrapper's layer
    logits = getattr(getattr(last, "activation", None), "__name__", "") != "softmax"
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(logits))
    model.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=steps, callbacks=list(callbacks), verbose=0)


def _fresh(build, inputs, steps):
    """A new model from the same seed, its training data, and its parameter count."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build()
    x = inputs(4 * steps)
    return model, x, _labels(model, 4 * steps), int(sum(np.prod(v.shape) for v in model.trainable_weights))


def measure_tfimp(name, build, inputs, steps, out_dir) -> dict:
    model, x, y, total_parameters = _fresh(build, inputs, steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = tfimp.wrap(model)
        per_layer = tfimp.prune(wrapped, SPARSITY)
    kernels = wrapping.prunable_kernels(wrapped)
    prunable = sum(k.size for k in kernels)
    pruned = sum(int(np.count_nonzero(k.mask.numpy() == 0)) for k in kernels)
    _train(wrapped, x, y, steps)
    zeros_kept = all(not np.any(k.weight.numpy()[k.mask.numpy() == 0]) for k in kernels)
    stripped = tfimp.strip(wrapped)
    path = os.path.join(out_dir, f"{name}.keras")
    stripped.save(path)
    np.save(os.path.join(out_dir, f"{name}_expected.npy"), np.asarray(stripped(x[:4] if not isinstance(x, list)
                                                                               else [a[:4] for a in x],
                                                                               training=False)))
    return {"model": name, "parameters": total_parameters, "prunable": prunable, "pruned": pruned,
            "share_pruned": pruned / total_parameters, "exact": pruned == int(np.floor(SPARSITY * prunable + 0.5)),
            "zeros_kept": bool(zeros_kept), "emptied_layers": tfimp.pruning.emptied_layers(per_layer),
            "coverage_warnings": [str(w.message) for w in caught if "stay dense" in str(w.message)], "path": path}


def measure_tfmot(build, inputs, steps) -> dict:
    from tensorflow_model_optimization.python.core.api.sparsity import keras as tfmot_sparsity

    model, x, y, total_parameters = _fresh(build, inputs, steps)
    try:
        pruned_model = tfmot_sparsity.prune_low_magnitude(
            model, pruning_schedule=tfmot_sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=1))
        _train(pruned_model, x, y, steps, [tfmot_sparsity.UpdatePruningStep()])
    except Exception as error:  # noqa: BLE001  (tfmot's refusals come as several exception types)
        return {"tfmot": "refused", "tfmot_error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"}
    zeros = 0
    for layer in pruned_model.submodules:
        if isinstance(layer, tfmot_glue.PruneLowMagnitude):
            zeros += sum(int(np.count_nonzero(mask.numpy() == 0)) for _, mask, _ in layer.pruning_vars)
    return {"tfmot": "ran", "tfmot_share_pruned": zeros / total_parameters}


def reload_in_fresh_process(rows, out_dir) -> dict:
    """Loads every saved .keras with plain tf_keras and this file's classes; the largest prediction difference."""
    names = [row["model"] for row in rows]
    script = textwrap.dedent(f"""
        import json, os, sys
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import numpy as np
        import tf_keras
        import model_zoo  # the custom classes, registered
        try:
            import keras_cv  # noqa: F401  (registers keras-cv's layer classes, as its users have them)
        except ImportError:
            pass
        errors = {{}}
        for name in {names!r}:
            builder, make_inputs = model_zoo.ZOO[name]
            x = make_inputs(4)
            expected = np.load(os.path.join({out_dir!r}, name + "_expected.npy"))
            try:
                loaded = tf_keras.models.load_model(os.path.join({out_dir!r}, name + ".keras"), compile=False)
                errors[name] = float(np.max(np.abs(np.asarray(loaded(x, training=False)) - expected)))
            except Exception as error:
                errors[name] = repr(error)[:200]
        print(json.dumps(errors))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows) -> str:
    lines = ["| model | parameters | pruned by tfimp | exact | zeros kept | reload max error | layers emptied | "
             "pruned by tfmot |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        tfmot = (f"{row['tfmot_share_pruned']:.2%}" if row["tfmot"] == "ran" else f"refused ({row['tfmot_error'][:70]}…)")
        reload = row["reload_error"]
        reload = f"{reload:.1e}" if isinstance(reload, float) else f"failed: {reload}"
        lines.append(f"| {row['model']} | {row['parameters']:,} | {row['share_pruned']:.2%} | "
                     f"{'yes' if row['exact'] else 'NO'} | {'yes' if row['zeros_kept'] else 'NO'} | {reload} | "
                     f"{len(row['emptied_layers'])} | {tfmot} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated names from the zoo")
    parser.add_argument("--steps", type=int, default=3, help="training steps (batch 4) after pruning")
    parser.add_argument("--out", default="bench_out/model_zoo")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        parser.error(f"unknown models {unknown}; the zoo has {list(ZOO)}")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name in names:  # the saved models stay in --out for inspection
        build, inputs = ZOO[name]
        start = time.perf_counter()
        row = measure_tfimp(name, build, inputs, args.steps, args.out)
        row.update(measure_tfmot(build, inputs, args.steps))
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print(f"{name}: tfimp {row['share_pruned']:.1%} of {row['parameters']:,} parameters, exact {row['exact']}, "
              f"tfmot {row.get('tfmot_share_pruned', row['tfmot'])} ({row['wall_s']:.0f} s)", flush=True)
    errors = reload_in_fresh_process(rows, args.out)
    for row in rows:
        row["reload_error"] = errors[row["model"]]
    print("\n" + table(rows))
    with open(os.path.join(args.out, "model_zoo.json"), "w") as handle:
        json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
