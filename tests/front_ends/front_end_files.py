"""File and interruption helpers of the shared suite."""


def cut(path: str) -> None:
    """Cuts a file in half, as a full disk or a killed copy would."""
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


class StopAfter:
    """A callback class factory: stops fit (as a kill would) after epoch ``epoch`` has been checkpointed."""

    def __new__(cls, keras, epoch):
        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, this_epoch, logs=None):
                if this_epoch == epoch:
                    raise KeyboardInterrupt

        return Stop()
