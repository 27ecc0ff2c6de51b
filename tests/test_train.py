import numpy as np
import pytest

from fpsim import SparseCodingModel, Threshold, TwoLayerNet, train_clean


@pytest.fixture(scope="module")
def setup():
    model = SparseCodingModel(100, 3, margin=0.3, magnitude=(1.0, 1.2), seed=0)
    net = TwoLayerNet.random(100, 100, threshold=0.3, seed=1)
    return model, net


def test_clean_training_learns(setup):
    model, net0 = setup
    net, hist = train_clean(net0, model, 600, 128, 0.5, record_every=100)
    assert hist["step"] == [100, 200, 300, 400, 500, 600]
    assert hist["loss"][-1] < hist["loss"][0] - 0.1
    assert hist["accuracy"][-1] > 0.7  # chance is 0.5
    assert hist["accuracy"][-1] > hist["accuracy"][0]
    assert net.step == 600 and net0.step == 0  # the input net is not modified
    np.testing.assert_array_equal(net.W_init, net0.W)


def test_same_seed_same_history(setup):
    model, net0 = setup
    a = train_clean(net0, model, 200, 64, 0.5, seed=5, record_every=50)
    b = train_clean(net0, model, 200, 64, 0.5, seed=5, record_every=50)
    c = train_clean(net0, model, 200, 64, 0.5, seed=6, record_every=50)
    np.testing.assert_array_equal(a[0].W, b[0].W)
    assert a[1] == b[1]
    assert not np.array_equal(a[0].W, c[0].W)


@pytest.mark.parametrize("kwargs", [dict(), dict(weight_decay=1e-3),
                                    dict(threshold=Threshold(0.1, end=0.3, ramp_steps=50)),
                                    dict(activation="smooth", rho=0.05), dict(n_train=300)])
def test_dictionary_path_equals_dense_path(kwargs):
    model = SparseCodingModel(60, 3, seed=2, dtype=np.float64)
    net_kwargs = {k: kwargs.pop(k) for k in ("threshold", "activation", "rho") if k in kwargs}
    net_kwargs.setdefault("threshold", 0.25)
    net0 = TwoLayerNet.random(40, 60, seed=3, dtype=np.float64, **net_kwargs)
    a, ha = train_clean(net0, model, 120, 32, 0.5, path="dense", record_every=40, **kwargs)
    b, hb = train_clean(net0, model, 120, 32, 0.5, path="dictionary", record_every=40, **kwargs)
    np.testing.assert_allclose(a.W, b.W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-9)
    assert not np.allclose(a.W, net0.W)


def test_weight_decay_shrinks_weights(setup):
    model, net0 = setup
    plain, _ = train_clean(net0, model, 300, 64, 0.5)
    decayed, _ = train_clean(net0, model, 300, 64, 0.5, weight_decay=0.05)
    assert np.linalg.norm(decayed.W) < np.linalg.norm(plain.W)


@pytest.mark.parametrize("path", ["dense", "dictionary"])
def test_checkpoint_resume_gives_the_same_result(tmp_path, setup, path):
    model, net0 = setup
    ref, ref_hist = train_clean(net0, model, 200, 64, 0.5, path=path, record_every=20)
    ckpt = tmp_path / "ckpt.npz"
    # an interrupted run: the first 100 steps, checkpointed at step 100
    train_clean(net0, model, 100, 64, 0.5, path=path, record_every=20,
                checkpoint=ckpt, checkpoint_every=100)
    assert not ckpt.exists()  # the final step is not checkpointed: the run completed
    train_clean(net0, model, 200, 64, 0.5, path=path, record_every=20, checkpoint=ckpt,
                checkpoint_every=100)
    assert ckpt.exists()
    resumed, hist = train_clean(net0, model, 200, 64, 0.5, path=path, record_every=20,
                                checkpoint=ckpt, checkpoint_every=100)
    np.testing.assert_array_equal(resumed.W, ref.W)
    assert hist == ref_hist


def test_bad_training_parameters(setup):
    model, net0 = setup
    with pytest.raises(ValueError, match="lr must lie in"):
        train_clean(net0, model, 10, 8, 0.0)
    with pytest.raises(ValueError, match="steps must lie in"):
        train_clean(net0, model, 0, 8, 0.1)
    with pytest.raises(ValueError, match="path must be one of"):
        train_clean(net0, model, 10, 8, 0.1, path="sparse")
    with pytest.raises(ValueError, match="does not match model.d"):
        train_clean(TwoLayerNet.random(3, 7), model, 10, 8, 0.1)
    with pytest.raises(ValueError, match="noise-free"):
        train_clean(net0, SparseCodingModel(100, 3, noise=0.1), 10, 8, 0.1, path="dictionary")


def test_checkpoint_of_another_run_is_refused(tmp_path, setup):
    model, net0 = setup
    ckpt = tmp_path / "ckpt.npz"
    train_clean(net0, model, 100, 64, 0.5, checkpoint=ckpt, checkpoint_every=50)
    with pytest.raises(ValueError, match="different run"):
        train_clean(net0, model, 100, 64, 0.4, checkpoint=ckpt, checkpoint_every=50)
