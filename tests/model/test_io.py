"""Model files: round trips, extras, and a clear refusal of anything else."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import streamgmm
from streamgmm import GaussianMixture
from streamgmm.model.covariance import COVARIANCE_TYPES
from streamgmm.model.io import FORMAT_VERSION, ModelFileError


@pytest.fixture(scope="module")
def model(blobs) -> GaussianMixture:
    return GaussianMixture(3, covariance_type="diag", random_state=0).fit(blobs)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path, threshold=np.array(-7.5), columns=np.array([0, 2, 5]))
    return path


def entries(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def rewrite_meta(path, out, **changes) -> None:
    arrays = entries(path)
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta.update(changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(out, **arrays)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_gives_identical_scores(blobs, tmp_path, covariance_type):
    gm = GaussianMixture(3, covariance_type=covariance_type, reg_covar=1e-5, n_init=2,
                         random_state=1).fit(blobs)
    gm.save(tmp_path / "m.npz")
    back = streamgmm.load(tmp_path / "m.npz")
    assert type(back) is GaussianMixture
    assert back.get_params() == gm.get_params()
    np.testing.assert_array_equal(back.score_samples(blobs), gm.score_samples(blobs))
    np.testing.assert_array_equal(back.predict_proba(blobs), gm.predict_proba(blobs))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.array_equal(getattr(back, name), getattr(gm, name)), name
    assert (back.converged_, back.n_iter_, back.lower_bound_) == (
        gm.converged_, gm.n_iter_, gm.lower_bound_)
    assert back.extras_ == {}


def test_loaded_model_can_keep_fitting(saved, blobs):
    back = streamgmm.load(saved)
    back.set_params(warm_start=True).fit(blobs)
    assert back.n_iter_ <= 2


def test_extras_are_stored_and_returned(saved):
    back = streamgmm.load(saved)
    assert set(back.extras_) == {"threshold", "columns"}
    assert back.extras_["threshold"] == -7.5
    np.testing.assert_array_equal(back.extras_["columns"], [0, 2, 5])


def test_object_extras_are_refused(model, tmp_path):
    with pytest.raises(ValueError, match="extra array 'names': object arrays cannot be stored"):
        model.save(tmp_path / "m.npz", names=np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "m.npz").exists()


def test_save_replaces_the_file_whole(model, saved):
    model.save(saved)
    assert streamgmm.load(saved).extras_ == {}
    assert not saved.with_name(saved.name + ".tmp").exists()


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="nope.npz: no such model file"):
        streamgmm.load(tmp_path / "nope.npz")


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not a model file \\(a directory"):
        streamgmm.load(tmp_path)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.95])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="not a complete .npz archive: truncated"):
        streamgmm.load(saved)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ModelFileError, match="not a streamgmm model file \\(not a complete "
                                             "\\.npz archive") as info:
        streamgmm.load(path)
    # numpy's own message for such a file suggests unpickling it: never pass that on.
    assert "pickle" not in str(info.value)


def test_flipped_byte_inside_an_entry(saved):
    data = bytearray(saved.read_bytes())
    offset = data.index(b"means_.npy") + 200
    data[offset] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt model file|means_"):
        streamgmm.load(saved)


def test_foreign_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3), X=np.zeros((4, 2)))
    with pytest.raises(ModelFileError, match="other.npz: not a streamgmm model file "
                                             "\\(no 'meta' entry\\)"):
        streamgmm.load(path)


def test_foreign_meta(saved, tmp_path):
    rewrite_meta(saved, tmp_path / "f.npz", format="some-other-tool")
    with pytest.raises(ModelFileError, match="not a streamgmm model file \\(format marker"):
        streamgmm.load(tmp_path / "f.npz")
    arrays = entries(saved)
    arrays["meta"] = np.frombuffer(b"{not json", dtype=np.uint8)
    np.savez(tmp_path / "g.npz", **arrays)
    with pytest.raises(ModelFileError, match="corrupt model metadata"):
        streamgmm.load(tmp_path / "g.npz")


def test_wrong_format_version(saved, tmp_path):
    rewrite_meta(saved, tmp_path / "v.npz", format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1} is not "
                                             f"supported \\(this streamgmm reads version "
                                             f"{FORMAT_VERSION}\\)"):
        streamgmm.load(tmp_path / "v.npz")


def test_unknown_class_and_missing_arrays(saved, tmp_path):
    rewrite_meta(saved, tmp_path / "c.npz", **{"class": "KMeans"})
    with pytest.raises(ModelFileError, match="unknown model class 'KMeans'"):
        streamgmm.load(tmp_path / "c.npz")
    arrays = entries(saved)
    del arrays["covariances_"]
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ModelFileError, match="model file lacks covariances_"):
        streamgmm.load(tmp_path / "m.npz")


def test_inconsistent_shapes(saved, tmp_path):
    arrays = entries(saved)
    arrays["covariances_"] = arrays["covariances_"][:, :2]
    np.savez(tmp_path / "s.npz", **arrays)
    with pytest.raises(ModelFileError, match="covariances_ should be a float array of shape "
                                             "\\(3, 3\\) for covariance_type 'diag', got "
                                             "float64 \\(3, 2\\)"):
        streamgmm.load(tmp_path / "s.npz")
    arrays = entries(saved)
    arrays["weights_"] = np.array([0.5, np.nan, 0.5])
    np.savez(tmp_path / "n.npz", **arrays)
    with pytest.raises(ModelFileError, match="weights_ holds non-finite values"):
        streamgmm.load(tmp_path / "n.npz")


@pytest.mark.parametrize("entry", ["weights_", "meta", "extra_threshold"])
def test_object_array_in_a_crafted_file_is_refused(saved, tmp_path, entry):
    arrays = entries(saved)
    # An object array is stored pickled; loading it would run the pickle.
    arrays[entry] = np.array([0.5, {"payload": 1}, 0.5], dtype=object)
    path = tmp_path / "crafted.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match=f"entry '{entry}' is not a plain numeric array "
                                             ".*allow_pickle=False"):
        streamgmm.load(path)
