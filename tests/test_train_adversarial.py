import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fpsim import SparseCodingModel, TwoLayerNet, run_sgd, train_adversarial, train_clean
from fpsim.certify import robust_accuracy
from fpsim.train import LowRankStep


@pytest.fixture(scope="module")
def clean_setting():
    """d=200, k=8 (sqrt(d/k) = 5), theta = 0.6/sqrt(k): a clean-trained net and a test set."""
    with threadpool_limits(limits=1, user_api="blas"):
        model = SparseCodingModel(200, 8, margin=0.5, magnitude=(1.0, 1.2), seed=0)
        net = TwoLayerNet.random(200, 200, threshold=0.21, seed=1)
        clean, _ = train_clean(net, model, steps=1500, batch=64, lr=0.2, eval_size=100, seed=0,
                               record_every=1500)
    x, y, _ = model.sample(300, np.random.default_rng(123))
    return model, clean, x, y


@threadpool_limits.wrap(limits=1, user_api="blas")  # small products: BLAS threads only add contention
def test_adversarial_training_raises_the_certified_lower_bound(clean_setting):
    # tau ~ 0.5/sqrt(k), l2 PGD.
    # Control: the clean net trained for the same extra steps at the same step size,
    # so the gain is adversarial training's, not just more training.
    model, clean, x, y = clean_setting
    longer, _ = train_clean(clean, model, steps=500, batch=64, lr=0.5, eval_size=100, seed=1,
                            record_every=500)
    adv, history = train_adversarial(clean, model, steps=500, batch=64, lr=0.5, attack="pgd", norm=2,
                                     tau=0.18, attack_steps=5, eval_size=100, robust_eval_size=100,
                                     seed=0, record_every=250)
    before, control, after = (robust_accuracy(n, x, y, 2, 0.18, model=model, pgd_steps=10, rng=0)
                              for n in (clean, longer, adv))
    # Measured: certified 0.24 (clean), 0.27 (clean, 500 more steps), 0.42 (adversarial).
    assert after.lower > control.lower + 0.1
    assert after.lower > before.lower + 0.1
    assert after.upper > control.upper
    assert adv.accuracy(x, y) > 0.9
    assert history["step"] == [250, 500]
    assert all(lo <= up for lo, up in zip(history["robust_lower"], history["robust_upper"]))
    assert history["robust_lower"][-1] > before.lower


def _small():
    model = SparseCodingModel(16, 2, margin=0.3, seed=1)
    net = TwoLayerNet.random(12, 16, threshold=0.3, seed=2, sigma0=0.1)
    return model, net


@pytest.mark.parametrize("attack, norm", [("fgm", "inf"), ("pgd", 2)])
def test_history_and_determinism(attack, norm):
    model, net = _small()
    kwargs = dict(steps=20, batch=8, lr=0.3, attack=attack, norm=norm, tau=0.1, eval_size=40,
                  robust_eval_size=30, record_every=10, seed=3)
    first, history = train_adversarial(net, model, **kwargs)
    again, history_again = train_adversarial(net, model, **kwargs)
    np.testing.assert_array_equal(first.W, again.W)
    assert history == history_again
    assert set(history) >= {"robust_lower", "robust_upper", "accuracy", "loss"}
    assert len(history["robust_lower"]) == 2
    assert not np.array_equal(first.W, net.W)


@pytest.mark.parametrize("attack, norm", [("pgd", 2), ("pgd", "inf"), ("fgm", 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reusing_the_attacks_preactivations_gives_the_same_training(attack, norm, dtype):
    """train_adversarial hands the attack's last pre-activations to the step; forming them again agrees."""
    from fpsim.attacks import perturbation
    model = SparseCodingModel(16, 2, margin=0.3, seed=1)
    net = TwoLayerNet.random(12, 16, threshold=0.3, seed=2, sigma0=0.1, dtype=dtype)
    kwargs = dict(steps=30, batch=8, lr=0.3, eval_size=40, record_every=30, seed=3)
    reused, _ = train_adversarial(net, model, attack=attack, norm=norm, tau=0.1, robust_eval_size=30, **kwargs)

    def perturb(net, x, y, rng):
        return x + perturbation(net, x, y, attack, norm, 0.1, rng=rng, steps=5)

    formed, _ = run_sgd(net, model, phase="adversarial", perturb=perturb, **kwargs)
    assert not np.array_equal(reused.W, net.W)
    np.testing.assert_allclose(reused.W, formed.W, rtol=0, atol=1e3 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_following_the_gram_matrix_gives_the_same_training(monkeypatch, dtype):
    """l2 PGD training follows K = W W^T through its sparse steps; forming every product agrees."""
    import fpsim.kernels
    import fpsim.network
    from fpsim.attacks import perturbation
    monkeypatch.setattr(fpsim.network, "SPARSE_CROSSOVER", 1.0)  # every step over the active pairs
    monkeypatch.setattr(fpsim.network, "GRAM_CROSSOVER", 1.0)    # and following K, whatever it costs
    model = SparseCodingModel(40, 4, margin=0.3, seed=1, dtype=dtype)
    W = np.repeat(model.dictionary.T, 2, axis=0) + 0.05 * np.random.default_rng(2).standard_normal((80, 40))
    net = TwoLayerNet(W.astype(dtype), threshold=0.3)
    calls = []
    update = fpsim.kernels.gram_update
    monkeypatch.setattr(fpsim.kernels, "gram_update", lambda *a: (calls.append(1), update(*a)))
    kwargs = dict(steps=150, batch=16, lr=0.3, weight_decay=1e-3, eval_size=40, record_every=150, seed=3)
    followed, _ = train_adversarial(net, model, attack="pgd", norm=2, tau=0.2, robust_eval_size=30, **kwargs)
    assert len(calls) == 150     # K followed every step (and was formed again every Gram.REFRESH)

    def perturb(net, x, y, rng):
        return x + perturbation(net, x, y, "pgd", 2, 0.2, rng=rng, steps=5)

    formed, _ = run_sgd(net, model, phase="adversarial", perturb=perturb, **kwargs)
    assert not np.array_equal(followed.W, net.W)
    np.testing.assert_allclose(followed.W, formed.W, rtol=0, atol=1e3 * np.finfo(dtype).eps)


@pytest.mark.parametrize("rank", [None, 2])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, rank):
    model, net = _small()
    kwargs = dict(steps=20, batch=8, lr=0.3, tau=0.1, eval_size=40, robust_eval_size=30,
                  record_every=5, checkpoint_every=10, seed=4, rank=rank)
    path = tmp_path / "adv.npz"
    whole, history = train_adversarial(net, model, checkpoint=path, **kwargs)
    assert path.exists()  # left at step 10 of 20, as if the run had stopped there
    resumed, history_resumed = train_adversarial(net, model, checkpoint=path, **kwargs)
    np.testing.assert_array_equal(whole.W, resumed.W)
    assert history == history_resumed


def test_resumed_run_following_the_gram_matrix_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    """K = W W^T is formed again at every checkpoint step, so a resumed run repeats the same bits."""
    import fpsim.network
    monkeypatch.setattr(fpsim.network, "SPARSE_CROSSOVER", 1.0)  # every step follows K
    monkeypatch.setattr(fpsim.network, "GRAM_CROSSOVER", 1.0)
    model = SparseCodingModel(40, 4, margin=0.3, seed=1)
    W = np.repeat(model.dictionary.T, 2, axis=0) + 0.05 * np.random.default_rng(2).standard_normal((80, 40))
    net = TwoLayerNet(W.astype(np.float32), threshold=0.3)
    kwargs = dict(steps=24, batch=16, lr=0.3, tau=0.2, eval_size=40, robust_eval_size=30, record_every=6,
                  checkpoint_every=18, seed=4)
    path = tmp_path / "adv.npz"
    whole, history = train_adversarial(net, model, checkpoint=path, **kwargs)
    resumed, history_resumed = train_adversarial(net, model, checkpoint=path, **kwargs)
    np.testing.assert_array_equal(whole.W, resumed.W)
    assert history == history_resumed


def test_extra_evaluate_entries_are_kept():
    model, net = _small()
    _, history = train_adversarial(net, model, steps=4, batch=4, lr=0.1, tau=0.1, eval_size=20,
                                   robust_eval_size=10, record_every=2,
                                   evaluate=lambda net, x, y: {"norm": float(np.linalg.norm(net.W))})
    assert len(history["norm"]) == len(history["robust_lower"]) == 2


def test_bad_arguments_are_refused():
    model, net = _small()
    base = dict(steps=2, batch=4, lr=0.1)
    with pytest.raises(ValueError, match="attack"):
        train_adversarial(net, model, attack="cw", **base)
    with pytest.raises(ValueError, match="norm"):
        train_adversarial(net, model, norm=1, **base)
    with pytest.raises(ValueError, match="tau"):
        train_adversarial(net, model, tau=0.0, **base)
    with pytest.raises(ValueError, match="attack_steps"):
        train_adversarial(net, model, attack_steps=0, **base)
    with pytest.raises(ValueError, match="attack_step_size"):
        train_adversarial(net, model, attack_step_size=-1.0, **base)
    with pytest.raises(ValueError, match="restarts"):
        train_adversarial(net, model, restarts=0, **base)
    with pytest.raises(ValueError, match="robust_eval_size"):
        train_adversarial(net, model, robust_eval_size=50, eval_size=20, **base)
    with pytest.raises(TypeError, match="perturb"):
        train_adversarial(net, model, perturb=lambda *a: a[1], **base)
    for rank in (0, 13):  # the small net is (12, 16): rank lies in [1, 12]
        with pytest.raises(ValueError, match=r"rank must lie in \[1, 12\]"):
            train_adversarial(net, model, rank=rank, **base)
    with pytest.raises(TypeError, match="rank must be an integer"):
        train_adversarial(net, model, rank=2.0, **base)
    with pytest.raises(ValueError, match="rank is trained on inputs"):
        run_sgd(net, model, rank=2, path="dictionary", **base)


# -- low-rank adversarial training (C7): W' = W + U V^T ---------------------------------------

def test_low_rank_gradients_match_finite_differences():
    # smooth activation (no kinks), weight decay on W', biases held fixed as in every SGD step
    rng = np.random.default_rng(0)
    model = SparseCodingModel(10, 2, seed=0, dtype=np.float64)
    net = TwoLayerNet.random(7, 10, threshold=0.2, seed=1, sigma0=0.3, dtype=np.float64,
                             activation="smooth", rho=0.05)
    x, y, _ = model.sample(16, rng)
    stepper = LowRankStep(net.copy(), 16, 3)
    U, V = 0.2 * rng.standard_normal((7, 3)), 0.2 * rng.standard_normal((10, 3))
    stepper.load({"U": U, "V": V})
    bias = stepper.net.bias()
    lam = 0.05

    def loss(U, V):
        moved = net.copy()
        moved.W = net.W + U @ V.T
        return moved.loss(x, y, lam, bias=bias)

    value, grad_u, grad_v = stepper.gradients(x, y, lam)
    assert value == pytest.approx(loss(U, V), rel=1e-12)
    eps = 1e-6
    for factor, grad in ((U, grad_u), (V, grad_v)):
        numeric = np.zeros_like(factor)
        for idx in np.ndindex(factor.shape):
            factor[idx] += eps
            up = loss(U, V)
            factor[idx] -= 2 * eps
            numeric[idx] = (up - loss(U, V)) / (2 * eps)
            factor[idx] += eps
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
        assert np.abs(numeric).max() > 1e-3  # the check is not vacuous


@pytest.mark.parametrize("m", [12, 20])  # d = 16: min(m, d) on either side
def test_low_rank_first_step_is_the_full_steps_best_rank_r_approximation(m):
    # Documented in LowRankStep: W'_1 - W_0 = -eta G_0 V_0 V_0^T, the truncated SVD of the full
    # step; equal to the full step at r = min(m, d). Same batch, same attack, same eta.
    model = SparseCodingModel(16, 2, margin=0.3, seed=1, dtype=np.float64)
    net = TwoLayerNet.random(m, 16, threshold=0.3, seed=2, sigma0=0.1, dtype=np.float64)
    kwargs = dict(steps=1, batch=8, lr=0.3, tau=0.1, eval_size=20, robust_eval_size=10, seed=3,
                  weight_decay=0.01)
    full, _ = train_adversarial(net, model, **kwargs)
    step = full.W - net.W
    u, s, vt = np.linalg.svd(step)
    assert s[2] > 1e-3 * s[0]  # the full step has rank > 2: the truncation below is a real cut
    same, _ = train_adversarial(net, model, rank=min(m, 16), **kwargs)
    np.testing.assert_allclose(same.W, full.W, rtol=0, atol=1e-12)
    low, _ = train_adversarial(net, model, rank=2, **kwargs)
    np.testing.assert_allclose(low.W - net.W, (u[:, :2] * s[:2]) @ vt[:2], rtol=0, atol=1e-12)


@threadpool_limits.wrap(limits=1, user_api="blas")
def test_rank_one_adversarial_training_raises_the_certified_lower_bound(clean_setting):
    model, clean, x, y = clean_setting
    adv, history = train_adversarial(clean, model, steps=500, batch=64, lr=0.5, attack="pgd", norm=2,
                                     tau=0.18, attack_steps=5, eval_size=100, robust_eval_size=100,
                                     seed=0, record_every=500, rank=1)
    assert np.linalg.matrix_rank(adv.W.astype(np.float64) - clean.W, tol=1e-4) == 1
    before, after = (robust_accuracy(n, x, y, 2, 0.18, model=model, pgd_steps=10, rng=0)
                     for n in (clean, adv))
    # Measured: certified 0.237 (clean) -> 0.297 (rank 1); full update 0.417, see the test above.
    assert after.lower > before.lower + 0.03
    assert adv.accuracy(x, y) > 0.9
