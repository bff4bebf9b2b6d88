"""Files a run reads back are checked: a damaged one is redone from a good checkpoint (and said) or refused."""

import gzip
import json
import os
import pathlib

import pytest

from tfimp.core import checkpoint, datasets, results, storage, workdir


def _payload(value: str):
    def write(directory):
        pathlib.Path(directory, "weights.bin").write_bytes(value.encode() * 100)
        os.makedirs(os.path.join(directory, "optimizer"), exist_ok=True)
        pathlib.Path(directory, "optimizer", "slots.bin").write_bytes(b"s" + value.encode())
    return write


def _reader(seen):
    def read(directory):
        seen.append(pathlib.Path(directory, "weights.bin").read_bytes()[:1].decode())
    return read


def _truncate(path):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: len(data) // 2])


def test_the_two_newest_saves_are_kept_and_a_damaged_one_falls_back_to_the_one_before(tmp_path, capsys):
    run = str(tmp_path)
    for epoch, value in enumerate("abc"):
        checkpoint.save(run, _payload(value), {"next_epoch": epoch + 1})
    assert sorted(os.listdir(tmp_path / "checkpoint")) == ["save_1", "save_2"]
    seen = []
    assert checkpoint.restore(run, _reader(seen)) == {"next_epoch": 3} and seen == ["c"]
    _truncate(tmp_path / "checkpoint" / "save_2" / "weights.bin")
    seen.clear()
    assert checkpoint.restore(run, _reader(seen)) == {"next_epoch": 2} and seen == ["b"]
    assert "checkpoint_files" not in checkpoint.load_state(run)
    err = capsys.readouterr().err
    assert "save_2 is damaged (weights.bin is not the file that was written" in err and "trying the save before" in err


def test_a_cut_state_file_falls_back_and_all_damaged_saves_are_refused_by_name(tmp_path, capsys):
    run = str(tmp_path)
    checkpoint.save(run, _payload("a"), {"next_epoch": 1})
    checkpoint.save(run, _payload("b"), {"next_epoch": 2})
    _truncate(tmp_path / "checkpoint" / "save_1" / "state.json")
    assert checkpoint.load_state(run) == {"next_epoch": 1}
    assert "state.json is damaged (not valid JSON" in capsys.readouterr().err
    (tmp_path / "checkpoint" / "save_0" / "optimizer" / "slots.bin").unlink()
    with pytest.raises(storage.DamagedFile, match=r"every checkpoint of the run is damaged .*save_0: "
                                                  r"optimizer/slots.bin is missing"):
        checkpoint.restore(run, _reader([]))


def test_a_save_written_before_digests_is_read_as_it_is(tmp_path):
    save = tmp_path / "checkpoint" / "save_4"
    save.mkdir(parents=True)
    _payload("z")(str(save))
    (save / "state.json").write_text(json.dumps({"next_epoch": 5}))
    seen = []
    assert checkpoint.restore(str(tmp_path), _reader(seen)) == {"next_epoch": 5} and seen == ["z"]


def test_a_cycle_records_its_files_and_names_the_damaged_one(tmp_path):
    run = str(tmp_path)
    directory = checkpoint.write_cycle(run, {"cycle": 2, "sparsity": 0.75}, _payload("w"))
    assert sorted(os.listdir(directory)) == ["files.json", "optimizer", "row.json", "weights.bin"]
    assert workdir.cycles(run) == [2] and checkpoint.damaged_cycle(run, 2) is None
    _truncate(os.path.join(directory, "weights.bin"))
    assert "weights.bin is not the file that was written" in checkpoint.damaged_cycle(run, 2)
    _truncate(os.path.join(directory, "row.json"))
    assert "row.json is damaged (not valid JSON" in checkpoint.damaged_cycle(run, 2)


def test_check_outputs_redoes_what_the_checkpoint_holds_and_refuses_the_rest(tmp_path, capsys):
    run = str(tmp_path)
    rows = [{"cycle": 0, "sparsity": 0.0}, {"cycle": 1, "sparsity": 0.5}, {"cycle": 2, "sparsity": 0.75}]
    for row in rows:
        checkpoint.write_cycle(run, row, _payload(str(row["cycle"])))
    results.write_results(run, rows, {"plan": {"cycles": 2}})
    rewritten = []

    def rewrite(row):
        rewritten.append(row["cycle"])
        checkpoint.write_cycle(run, row, _payload(str(row["cycle"])))

    _truncate(tmp_path / "cycle_2" / "weights.bin")
    _truncate(tmp_path / "results.json")
    checkpoint.check_outputs(run, rows, {"plan": {"cycles": 2}}, rewrite_cycle=rewrite, restorable_cycle=2,
                             finished=True)
    assert rewritten == [2] and checkpoint.damaged_cycle(run, 2) is None
    assert results.load_results(run) == rows
    err = capsys.readouterr().err
    assert "cycle_2 is damaged" in err and "results.json is damaged" in err and "writing" in err
    (tmp_path / "results.csv").write_text("cycle\n")
    checkpoint.check_outputs(run, rows, {"plan": {"cycles": 2}}, rewrite_cycle=rewrite, restorable_cycle=2,
                             finished=True)
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == "cycle,sparsity"
    _truncate(tmp_path / "cycle_1" / "weights.bin")
    with pytest.raises(storage.DamagedFile, match=r"cycle_1 is damaged .*past cycle 1, so it cannot be written "
                                                  r"again from it: restore the file, or start the run again"):
        checkpoint.check_outputs(run, rows, {}, rewrite_cycle=rewrite, restorable_cycle=2, finished=True)


def test_damaged_identity_and_data_files_are_refused_by_name(tmp_path):
    run = tmp_path / "run"
    workdir.claim(str(run), {"run": 1}, verbose=0)
    _truncate(run / workdir.IDENTITY)
    with pytest.raises(storage.DamagedFile, match=r"identity.json is damaged \(not valid JSON.*--overwrite"):
        workdir.claim(str(run), {"run": 1}, verbose=0)
    workdir.claim(str(run), {"run": 1}, overwrite=True, verbose=0)  # overwrite starts afresh
    assert json.loads((run / workdir.IDENTITY).read_text()) == {"run": 1}
    data = tmp_path / "idx"
    data.mkdir()
    with gzip.open(data / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + bytes(8))
    _truncate(data / "train-images-idx3-ubyte.gz")
    with pytest.raises(datasets.DataUnavailableError, match=r"train-images-idx3-ubyte.gz is damaged"):
        datasets.read_idx(str(data / "train-images-idx3-ubyte.gz"))
    with pytest.raises(datasets.DataUnavailableError, match=r"data_dir .*nowhere.* does not exist"):
        datasets.idx_dirs("fashion_mnist", str(tmp_path / "nowhere"))
