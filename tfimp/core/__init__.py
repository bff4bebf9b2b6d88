"""tfimp's framework-free core: what every front end shares, in numpy and plain Python.

Nothing here imports TensorFlow, Keras or tfmot (tested with them blocked):

- :mod:`tfimp.core.selection`: exact k-smallest selection over many arrays.
- :mod:`tfimp.core.criteria`: the allocation criteria (global, uniform, uniform+, ERK, LAMP).
- :mod:`tfimp.core.retraining`: the retraining schedules (FT, LRW, SLR, CLR, LLR, ALLR) as tables.
- :mod:`tfimp.core.plan`: the IMP plan (epochs, cycles, sparsity after each).
- :mod:`tfimp.core.registry`: the name -> implementation registries they extend through.

The public names stay where users know them (``tfimp.selection``,
``tfimp.criteria``, ``tfimp.Plan``, ``tfimp.lr.register``, ...).
"""
