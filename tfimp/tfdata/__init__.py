"""TensorFlow as a library both front ends may use: ``tf.data`` pipelines, tensorflow-datasets, TensorBoard files.

TensorFlow here is a data and logging library, not a Keras: nothing in this
package imports ``tf.keras``, so it leaves the choice of Keras to the
process. It depends on :mod:`tfimp.core` only; the tf_keras front end serves
the pipelines as ``tfimp.data``, the Keras 3 front end uses them for the
tfds datasets and for augmentation (:mod:`tfimp.keras3.data`). See
:mod:`tfimp.tfdata.pipelines` and :mod:`tfimp.tfdata.tensorboard`.
"""
