"""File helpers of the shared suite."""


def cut(path: str) -> None:
    """Cuts a file in half, as a full disk or a killed copy would."""
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
