"""TensorFlow input pipelines (``tf.data``, tensorflow-datasets) that both front ends may read through.

TensorFlow here is a data library, not a Keras: nothing in this package
imports ``tf.keras``, so it leaves the choice of Keras to the process. It
depends on :mod:`tfimp.core` only; the tf_keras front end serves it as
``tfimp.data``, the Keras 3 front end uses it for the tfds datasets and for
augmentation (:mod:`tfimp.keras3.data`). See :mod:`tfimp.tfdata.pipelines`.
"""
