from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import perturbtools as pt  # noqa: E402
from perturbtools.tl._gp import SharedRBFGP  # noqa: E402
from perturbtools.tl._gp._module import ProfiledNegMLL, fit_shared_rbf, gram_root  # noqa: E402


def test_neg_mll_equals_sum_of_independent_gps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    gp = SharedRBFGP(lengthscale=1.3, variance=0.7, noise=0.2, jitter=0.0)
    with torch.no_grad():
        K = gp.kernel(x, x) + 0.2 * torch.eye(7, dtype=torch.float64)
        ref = -sum(
            torch.distributions.MultivariateNormal(torch.zeros(7, dtype=torch.float64), K).log_prob(y[:, g])
            for g in range(4)
        )
        got = gp.neg_mll(x, y, 4) * 7 * 4
        wide = torch.randn(7, 30, generator=gen, dtype=torch.float64)
        ref_wide = -sum(
            torch.distributions.MultivariateNormal(torch.zeros(7, dtype=torch.float64), K).log_prob(wide[:, g])
            for g in range(30)
        )
        got_wide = gp.neg_mll(x, gram_root(wide), 30) * 7 * 30
    assert float(got) == pytest.approx(float(ref), rel=1e-10)
    assert float(got_wide) == pytest.approx(float(ref_wide), rel=1e-9)


def _profiled_by_autograd(log_ls, log_ratio, x, C, g):
    """The profiled objective written with plain autograd through the Cholesky (reference for the analytic one)."""
    n = len(x)
    R = torch.exp(-0.5 * torch.cdist(x, x).pow(2) / torch.exp(2 * log_ls)) + torch.exp(log_ratio) * torch.eye(
        n, dtype=x.dtype
    )
    L = torch.linalg.cholesky(R)
    q = torch.linalg.solve_triangular(L, C, upper=False).pow(2).sum()
    return 0.5 + 0.5 * torch.log(q / (n * g)) + torch.log(torch.diagonal(L)).mean() + 0.5 * math.log(2 * math.pi)


def test_profiled_neg_mll_value_and_analytic_gradient():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(9, 20, generator=gen, dtype=torch.float64)
    C = gram_root(y)
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.2, -1.0)]
    ref = _profiled_by_autograd(*params, x, C, 20)
    ref_grad = torch.autograd.grad(ref, params)
    log_ls, log_ratio = params
    R = torch.exp(-0.5 * torch.cdist(x, x).pow(2) / torch.exp(2 * log_ls)) + torch.exp(log_ratio) * torch.eye(
        9, dtype=x.dtype
    )
    got = ProfiledNegMLL.apply(R, C, 20)
    got_grad = torch.autograd.grad(got, params)
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    for a, b in zip(got_grad, ref_grad, strict=True):
        assert float(a) == pytest.approx(float(b), rel=1e-8)
    # at the profiled variance the full likelihood equals the profiled one
    s = torch.linalg.solve_triangular(torch.linalg.cholesky(R.detach()), C, upper=False).pow(2).sum().item() / (9 * 20)
    gp = SharedRBFGP(lengthscale=math.exp(0.2), variance=s, noise=s * math.exp(-1.0), jitter=0.0)
    with torch.no_grad():
        assert float(gp.neg_mll(x, C, 20)) == pytest.approx(got.item(), rel=1e-10)


def test_fit_shared_rbf_reaches_the_unprofiled_optimum():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    f = torch.sin(2 * x[:, :1]) * torch.randn(1, 15, generator=gen, dtype=torch.float64)
    y = 2.0 * f + 0.3 * torch.randn(40, 15, generator=gen, dtype=torch.float64)
    gp, history = fit_shared_rbf(x, y, lengthscale=1.0, max_iter=100)
    assert history[-1] < history[0]
    # the gradient of the full (unprofiled) objective vanishes at the fitted hyperparameters
    gp.jitter = 0.0
    loss = gp.neg_mll(x, y, 15)
    grads = torch.autograd.grad(loss, [gp.log_lengthscale, gp.log_variance, gp.log_noise])
    assert max(abs(float(g)) for g in grads) < 1e-4
    assert 0.06 < gp.hyperparameters["noise"] < 0.13  # simulated noise variance 0.09


def test_fit_shared_rbf_starts_at_the_given_hyperparameters_in_float64():
    """The first evaluation is the profiled likelihood at the start values, against scipy's multivariate normal."""
    from scipy.spatial.distance import cdist
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 8))
    # unit kernel at lengthscale 0.3 and noise ratio 0.5 (floor included), plus the default jitter 1e-6
    R = np.exp(-0.5 * cdist(x, x, "sqeuclidean") / 0.3**2) + (0.5 + 1e-6) * np.eye(12)
    s = np.trace(np.linalg.solve(R, y @ y.T)) / (12 * 8)  # the profiled variance
    ref = -sum(multivariate_normal(np.zeros(12), s * R).logpdf(y[:, g]) for g in range(8)) / (12 * 8)
    _, history = fit_shared_rbf(torch.from_numpy(x), torch.from_numpy(y), lengthscale=0.3, max_iter=1)
    # float32 start values or a wrong floor / jitter sign move this by 2e-10 to 7e-6
    assert history[0] == pytest.approx(ref, rel=1e-12)


def test_fit_shared_rbf_stopping_rules_and_jitter():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    y = torch.sin(3 * x[:, :1]) + 0.2 * torch.randn(30, 6, generator=gen, dtype=torch.float64)
    gp, long = fit_shared_rbf(x, y, lengthscale=0.2, max_iter=100, tolerance=1e-12)
    _, one = fit_shared_rbf(x, y, lengthscale=0.2, max_iter=1, tolerance=1e-12)
    _, loose = fit_shared_rbf(x, y, lengthscale=0.2, max_iter=100, tolerance=10.0)
    assert len(one) < len(long) and len(loose) < len(long)
    # jitter is relative to the fitted kernel variance
    assert gp.jitter == pytest.approx(1e-6 * gp.hyperparameters["variance"], rel=1e-12)
    big, _ = fit_shared_rbf(1000 * x, 1000 * y, lengthscale=200.0, max_iter=100, jitter=1e-3)
    assert big.jitter == pytest.approx(1e-3 * big.hyperparameters["variance"], rel=1e-12)


def test_gram_root_factor_has_at_most_n_columns():
    gen = torch.Generator().manual_seed(8)
    square = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    assert gram_root(square) is square  # at most N columns: y itself
    wide = 0.01 * torch.randn(5, 40, generator=gen, dtype=torch.float64)  # eigenvalues of y y' well below 1
    C = gram_root(wide)
    assert C.shape == (5, 5)
    torch.testing.assert_close(C @ C.T, wide @ wide.T, rtol=1e-10, atol=1e-14)


def test_gp_tensors_follow_the_inputs_device():
    """On torch's meta device, which refuses to mix with CPU tensors, every tensor the GP makes follows its inputs."""
    gp = SharedRBFGP(lengthscale=1.0, variance=1.0, noise=0.1, jitter=1e-6).to("meta")
    x = torch.empty(6, 2, dtype=torch.float64, device="meta")
    assert gp._chol(x).device.type == "meta"
    mean, var = gp.posterior(x, torch.empty(6, 3, dtype=torch.float64, device="meta"), x[:2])
    assert mean.shape == (2, 3) and var.device.type == "meta"
    R = torch.empty(6, 6, dtype=torch.float64, device="meta", requires_grad=True)
    ProfiledNegMLL.apply(R, torch.empty(6, 3, dtype=torch.float64, device="meta"), 3).backward()
    assert R.grad.device.type == "meta" and R.grad.shape == (6, 6)


def test_posterior_matches_closed_form():
    gen = torch.Generator().manual_seed(1)
    x, xs = torch.randn(6, 2, generator=gen, dtype=torch.float64), torch.randn(3, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    gp = SharedRBFGP(lengthscale=0.9, variance=1.1, noise=0.3, jitter=0.0)
    with torch.no_grad():
        K = gp.kernel(x, x) + 0.3 * torch.eye(6, dtype=torch.float64)
        Ks = gp.kernel(xs, x)
        mean, var = gp.posterior(x, y, xs)
        torch.testing.assert_close(mean, Ks @ torch.linalg.solve(K, y))
        torch.testing.assert_close(var, torch.diagonal(gp.kernel(xs, xs) - Ks @ torch.linalg.solve(K, Ks.T)))
        # fewer outputs than new inputs: the other order of the solves, the same posterior
        mean2, _ = gp.posterior(x, y[:, :2], xs)
        torch.testing.assert_close(mean2, Ks @ torch.linalg.solve(K, y[:, :2]))


@pytest.fixture
def gp_adata():
    a = pt.data.synthetic(n_cells=2500, n_genes=80, n_perturbations=40, rng=2)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    return a


def test_gp_fit_predict_calibration_save_load(gp_adata, tmp_path):
    pt.pp.split_perturbations(gp_adata, test_size=0.3, val_size=0.0)
    m = pt.tl.GPModel(gp_adata, n_components=8).fit()
    assert m.history_["neg_mll"].iloc[-1] < m.history_["neg_mll"].iloc[0]
    m.predict()
    assert "gp_mean_var" in gp_adata.varm and (gp_adata.varm["gp_mean_var"] > 0).all().all()
    cal = pt.metrics.calibration(gp_adata, "gp", levels=(0.5, 0.9))
    # held-out perturbations: coverage of the 90% interval within 10 points of nominal
    assert abs(cal.set_index("level").loc[0.9, "coverage"] - 0.9) < 0.1
    # by hand, with genes never expressed left out (made so here: their observed and predicted means set to 0)
    b = gp_adata.copy()
    dead = b.var_names[:4]
    for key in ("deg_mean", "gp_mean"):
        frame = b.varm[key].copy()
        frame.loc[dead] = 0.0
        b.varm[key] = frame
    b.var.loc[dead, "deg_control_mean"] = 0.0
    test = list(b.uns["gp"]["predicted"])
    keep = ~b.var_names.isin(dead)
    y, mu = b.varm["deg_mean"][test].to_numpy()[keep], b.varm["gp_mean"][test].to_numpy()[keep]
    sd = np.sqrt(b.varm["gp_mean_var"][test].to_numpy()[keep])
    got = pt.metrics.calibration(b, "gp", levels=(0.5,)).iloc[0]
    assert got["coverage"] == pytest.approx(np.mean(np.abs(y - mu) <= 0.6744897501960817 * sd))
    assert got["n_genes_excluded"] == 4 and got["n_entries"] == y.size
    assert 0 <= got["coverage_ci_low"] <= got["coverage"] <= got["coverage_ci_high"] <= 1
    m.save(tmp_path / "gp")
    again = pt.tl.GPModel.load(tmp_path / "gp", gp_adata).predict(inplace=False)
    before = m.predict(inplace=False)
    pd.testing.assert_frame_equal(again.mean, gp_adata.varm["gp_mean"])
    for field in ("mean_var", "de_proba", "direction_proba", "logfc"):  # hyperparameters, jitter, se, t_crit kept
        pd.testing.assert_frame_equal(getattr(again, field), getattr(before, field), check_exact=True)
    import matplotlib.axes

    assert isinstance(pt.pl.calibration(cal), matplotlib.axes.Axes)


def test_gp_beats_mean_on_structured_data(gp_adata):
    res = pt.bm.cross_validate(
        gp_adata,
        {"gp": (pt.tl.GPModel, {"n_components": 8}), "mean": pt.tl.NonControlMean},
        n_splits=4,
        show_progress_bar=False,
    )
    s = res.summary.set_index(["model", "metric"])["mean"]
    assert s["gp", "pearson_delta"] > s["mean", "pearson_delta"] + 0.05


def test_gp_samples_match_moments(gp_adata):
    m = pt.tl.GPModel(gp_adata, n_components=8).fit(gp_adata.uns["deg"]["perturbations"][:30])
    test = gp_adata.uns["deg"]["perturbations"][30:33]
    mean, var = m.predict_distribution(test)
    draws = m.sample(test, 4000, rng=0)
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * math.sqrt(var.max() / 4000))
    np.testing.assert_allclose(draws.var(0), var, rtol=0.15)


def test_learning_curve_and_plot(gp_adata):
    table = pt.bm.learning_curve(
        gp_adata,
        {"gp": (pt.tl.GPModel, {"n_components": 5}), "knn": pt.tl.KNN},
        train_sizes=[5, 20],
        n_splits=2,
        show_progress_bar=False,
    )
    assert set(table["n_train"]) == {5, 20} and len(table) == 2 * 2 * 2
    import matplotlib.axes

    assert isinstance(pt.pl.learning_curve(table), matplotlib.axes.Axes)


def test_reduce_embedding_concat():
    rng = np.random.default_rng(0)
    a = pd.DataFrame(rng.normal(size=(30, 5)), index=[f"g{i}" for i in range(30)])
    b = pd.DataFrame(rng.normal(size=(20, 7)), index=[f"g{i}" for i in range(10, 30)])
    out = pt.pp.reduce_embedding([a, b], n_components=4)
    assert out.shape == (20, 4)


def _textbook_kernels(m, x, xs):
    """By hand, for a fitted GPModel: RBF k(x*, x), k(x*, x*) and K = k(x, x) + (noise + jitter) I."""
    hp = m.gp_.hyperparameters

    def k(a, b):
        return hp["variance"] * np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * hp["lengthscale"] ** 2))

    return k(xs, x), k(xs, xs), k(x, x) + (hp["noise"] + m.gp_.jitter) * np.eye(len(x))


def test_gp_model_posterior_is_a_textbook_gp_on_centred_scaled_outputs(gp_adata):
    """Prediction = training mean delta + scale * K*ᵀ (K + σ²I)⁻¹ (centred, scaled training deltas), by hand."""
    perts = gp_adata.uns["deg"]["perturbations"]
    train, test = perts[:30], perts[30:]
    m = pt.tl.GPModel(gp_adata, n_components=6).fit(train)
    data = m.data_
    delta = data.delta[data.index(train)]
    y_mean = delta.mean(0)
    np.testing.assert_allclose(m.y_mean_, y_mean)
    y = (delta - y_mean) / m.y_scale_
    ks, kss, K = _textbook_kernels(m, m._embed(train), m._embed(test))
    mean = ks @ np.linalg.solve(K, y) * m.y_scale_ + y_mean
    var = (np.diag(kss - ks @ np.linalg.solve(K, ks.T))[:, None] + m.gp_.hyperparameters["noise"]) * m.y_scale_**2
    got_mean, got_var = m.predict_distribution(test)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got_var, var, rtol=1e-6, atol=1e-12)
    far = pd.DataFrame(m.embedding_.to_numpy() * 0 + 1e6, index=m.embedding_.index, columns=m.embedding_.columns)
    m.embedding_ = far  # infinitely far from every training input: the prior mean, i.e. the training mean delta
    np.testing.assert_allclose(m.predict_distribution(test[:1])[0][0], y_mean, atol=1e-9)


def test_accelerator_argument(gp_adata):
    a = gp_adata
    cpu = pt.tl.GPModel(a, embedding="gene_emb").fit(accelerator="cpu").predict(inplace=False)
    auto = pt.tl.GPModel(a, embedding="gene_emb").fit().predict(inplace=False)
    if not torch.cuda.is_available():  # "auto" is the CPU here: the same fit
        pd.testing.assert_frame_equal(cpu.mean, auto.mean)
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pt.tl.GPModel(a, embedding="gene_emb").fit(accelerator="cuda")


@pytest.mark.gpu
def test_gp_cuda_matches_cpu(gp_adata):
    a = gp_adata
    cpu = pt.tl.GPModel(a, embedding="gene_emb").fit(accelerator="cpu").predict(inplace=False)
    gpu = pt.tl.GPModel(a, embedding="gene_emb").fit(accelerator="cuda").predict(inplace=False)
    np.testing.assert_allclose(gpu.mean.to_numpy(), cpu.mean.to_numpy(), rtol=1e-5, atol=1e-6)


def test_hyperparameters_from_a_subset_are_those_of_all_perturbations():
    """Fitted on 300 of 900 draws from a known GP, lengthscale / variance / noise are within 10% of the full fit."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(900, 3, generator=gen, dtype=torch.float64)
    truth = SharedRBFGP(lengthscale=1.3, variance=2.0, noise=0.2, jitter=1e-6)
    with torch.no_grad():
        L = torch.linalg.cholesky(truth.kernel(x, x) + 0.2 * torch.eye(900, dtype=torch.float64))
    y = L @ torch.randn(900, 40, generator=gen, dtype=torch.float64)
    full, _ = fit_shared_rbf(x, y, lengthscale=1.0, max_iter=100)
    rows = torch.from_numpy(np.sort(np.random.default_rng(0).choice(900, 300, replace=False)))
    sub, _ = fit_shared_rbf(x[rows], y[rows], lengthscale=1.0, max_iter=100)
    for name in ("lengthscale", "variance", "noise"):
        assert sub.hyperparameters[name] == pytest.approx(full.hyperparameters[name], rel=0.1), name
    assert full.hyperparameters["lengthscale"] == pytest.approx(1.3, rel=0.1)


def test_gp_model_fits_hyperparameters_on_a_subset_and_conditions_on_all(gp_adata):
    perts = gp_adata.uns["deg"]["perturbations"]
    train, test = perts[:30], perts[30:]
    full = pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=None).fit(train)
    at_limit = pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=30).fit(train)
    assert at_limit.gp_.hyperparameters == full.gp_.hyperparameters  # no fewer than the training set: all of them
    m = pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=12).fit(train)
    assert m.gp_.hyperparameters != full.gp_.hyperparameters  # fitted on 12 of the 30
    # the posterior conditions on all 30 training perturbations with those hyperparameters (textbook GP)
    delta = m.data_.delta[m.data_.index(train)]
    y = (delta - delta.mean(0)) / m.y_scale_
    ks, _, K = _textbook_kernels(m, m._embed(train), m._embed(test))
    assert len(K) == 30
    np.testing.assert_allclose(
        m.predict_distribution(test)[0], ks @ np.linalg.solve(K, y) * m.y_scale_ + delta.mean(0), rtol=1e-6, atol=1e-9
    )
    with pytest.raises(ValueError, match="at least 2"):
        pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=1)


def _by_hand_inputs(adata, train):
    """Training deltas, t statistics and DEG calls straight from the labels (genes x perturbations frames)."""
    delta = (adata.varm["deg_mean"][train].to_numpy().T - adata.var["deg_control_mean"].to_numpy()[None]).astype(float)
    t = adata.varm["deg_scores"][train].to_numpy().T.astype(float)
    return delta, t, adata.varm["deg_is_de"][train].to_numpy().T.astype(bool)


def test_gp_model_scales_thresholds_and_subtask_probabilities_by_hand(gp_adata):
    """Per-gene scale max(SD, median |delta / t|), critical |t| = smallest called |t|, and the subtask probabilities
    P(|delta| > t_crit se), P(delta > 0) and the fold change of the clipped mean, from the predictive N(m, s^2)."""
    from scipy import stats

    perts = gp_adata.uns["deg"]["perturbations"]
    train, test = perts[:30], perts[30:]
    a = gp_adata.copy()  # gene 0 barely varies in training (SD 1e-3) but has a large standard error: the floor acts
    mean0, scores0 = a.varm["deg_mean"].copy(), a.varm["deg_scores"].copy()
    mean0.iloc[0, :] = a.var["deg_control_mean"].iloc[0] + 1e-3 * np.resize([1.0, -1.0], a.varm["deg_mean"].shape[1])
    scores0.iloc[0, :] = 0.01
    a.varm["deg_mean"], a.varm["deg_scores"] = mean0, scores0
    delta, t, is_de = _by_hand_inputs(a, train)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(delta / t)
    ratio[~np.isfinite(ratio)] = np.nan
    se = np.array([np.median(c[~np.isnan(c)]) for c in ratio.T])
    assert np.isfinite(se).all()  # every gene has a finite standard error here: no fallback involved
    m = pt.tl.GPModel(a, n_components=6).fit(train)
    np.testing.assert_allclose(m.gene_se_, se, rtol=1e-6)
    np.testing.assert_allclose(m.y_scale_, np.maximum(delta.std(axis=0), se), rtol=1e-6)
    assert (delta.std(axis=0) < se).any() and (delta.std(axis=0) > se).any()  # both sides of the floor are used
    assert m.t_crit_ == pytest.approx(np.abs(t[is_de]).min())
    mean, var = m.predict_distribution(test)
    control = a.var["deg_control_mean"].to_numpy()
    mean = mean - np.where(np.arange(a.n_vars) % 2, control + 0.05, 0.0)  # every other gene below zero expression
    m.predict_distribution = lambda perturbations: (mean, var)  # the subtask outputs of this predictive N(m, s^2)
    pred = m.predict(test, inplace=False)
    sd, thr = np.sqrt(var), m.t_crit_ * se
    de = 1 - stats.norm.cdf(thr, mean, sd) + stats.norm.cdf(-thr, mean, sd)
    np.testing.assert_allclose(pred.de_proba[test].to_numpy().T, de, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(
        pred.direction_proba[test].to_numpy().T, 1 - stats.norm.cdf(0, mean, sd), rtol=1e-5, atol=1e-12
    )
    mu = np.maximum(control + mean, 0)
    assert (mu == 0).any() and (mu > 0).any()
    np.testing.assert_allclose(pred.mean[test].to_numpy().T, mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pred.mean_var[test].to_numpy().T, var, rtol=1e-6)
    fc = (np.expm1(mu + 0.1) + 1e-9) / (np.expm1(control + 0.1) + 1e-9)
    np.testing.assert_allclose(pred.logfc[test].to_numpy().T, np.log2(fc), rtol=1e-5, atol=1e-6)  # float32 frames


def test_gp_model_unstandardised_outputs_and_no_called_degs(gp_adata):
    """``standardize=False`` scales by 1; without any training DEG the critical |t| is the two-sided 1% normal one."""
    perts = gp_adata.uns["deg"]["perturbations"]
    m = pt.tl.GPModel(gp_adata, n_components=6, standardize=False).fit(perts[:30])
    np.testing.assert_array_equal(m.y_scale_, np.ones(gp_adata.n_vars))
    b = gp_adata.copy()
    b.varm["deg_is_de"] = b.varm["deg_is_de"] & False
    m = pt.tl.GPModel(b, n_components=6).fit(perts[:30])
    assert m.t_crit_ == pytest.approx(2.5758293035489004)  # scipy.stats.norm.ppf(0.995)


def test_gp_model_defaults_and_labels_key(gp_adata):
    """The paper's 50 components, a 2,000-perturbation fitting subset, ``gene_emb``; ``labels_key`` is honoured."""
    perts = gp_adata.uns["deg"]["perturbations"]
    m = pt.tl.GPModel(gp_adata)
    assert m.init_params_ == {
        "embedding": ["gene_emb"], "n_components": 50, "standardize": True, "max_fit_perturbations": 2000,
    }  # fmt: skip
    pd.testing.assert_frame_equal(m.embedding_, pt.pp.reduce_embedding([gp_adata.uns["gene_emb"]], n_components=50))
    assert pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=2).fit(perts[:5]).gp_ is not None
    b = gp_adata.copy()  # the labels only under "lab"
    pt.pp.deg_labels(b, key_added="lab")
    del b.uns["deg"]
    for key in [k for k in b.varm if k.startswith("deg_")]:
        del b.varm[key]
    b.var = b.var.drop(columns=[c for c in b.var if c.startswith("deg_")])
    got = pt.tl.GPModel(b, n_components=6, labels_key="lab").fit(perts[:30]).predict(perts[30:], inplace=False)
    want = pt.tl.GPModel(gp_adata, n_components=6).fit(perts[:30]).predict(perts[30:], inplace=False)
    pd.testing.assert_frame_equal(got.mean, want.mean)


def _fit_inputs(m, train):
    """Embedded inputs and centred, scaled training deltas of a fitted GPModel, as float64 tensors."""
    data = m.data_
    delta = data.delta[data.index(train)]
    y = (delta - delta.mean(0)) / m.y_scale_
    return torch.from_numpy(m._embed(train).astype(np.float64)), torch.from_numpy(y.astype(np.float64))


def test_gp_model_fits_the_subset_drawn_by_rng_from_the_median_distance(gp_adata):
    """Hyperparameters = fit_shared_rbf on the sorted ``default_rng(seed).choice(n, limit)`` rows, started at their
    median pairwise distance, 100 iterations; the default seed is 0."""
    from scipy.spatial.distance import pdist

    train = gp_adata.uns["deg"]["perturbations"][:30]
    m = pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=12).fit(train)
    x, y = _fit_inputs(m, train)
    rows = np.sort(np.random.default_rng(0).choice(30, 12, replace=False))
    gp, history = fit_shared_rbf(
        x[rows], y[rows], lengthscale=float(np.median(pdist(x[rows].numpy()))), max_iter=100
    )  # fmt: skip
    assert m.gp_.hyperparameters == gp.hyperparameters
    np.testing.assert_array_equal(m.history_["neg_mll"], history)
    seeded = pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=12).fit(train, rng=0)
    assert seeded.gp_.hyperparameters == m.gp_.hyperparameters
    other = pt.tl.GPModel(gp_adata, n_components=6, max_fit_perturbations=12).fit(train, rng=1)
    assert other.gp_.hyperparameters != m.gp_.hyperparameters
    # two training perturbations: started at their distance; one cannot fit a kernel
    two = pt.tl.GPModel(gp_adata, n_components=6).fit(train[:2])
    x, y = _fit_inputs(two, train[:2])
    gp, _ = fit_shared_rbf(x, y, lengthscale=float(torch.dist(x[0], x[1])), max_iter=100)
    assert two.gp_.hyperparameters == gp.hyperparameters
    with pytest.raises(ValueError, match="at least 2 training perturbations"):
        pt.tl.GPModel(gp_adata, n_components=6).fit(train[:1])


def test_gp_model_fits_on_the_accelerator_and_keeps_the_gp_on_the_cpu(gp_adata, monkeypatch, caplog):
    """Inputs and outputs reach ``fit_shared_rbf`` on the device ``accelerator`` names, 100 iterations by default; the
    fitted GP comes back to the CPU, its history is a table and its hyperparameters are logged."""
    seen, moved = [], []

    class FittedGP:
        def __init__(self):
            self.hyperparameters = {"lengthscale": 1.5}

        def to(self, device):
            moved.append(device)
            return self

    def record(x, y, **kwargs):
        seen.extend([x.device.type, y.device.type, kwargs["max_iter"]])
        return FittedGP(), [3.0, 2.5]

    monkeypatch.setattr("perturbtools.tl._gp._module.fit_shared_rbf", record)
    with caplog.at_level("INFO", logger="perturbtools.tl._gp._model"):
        m = pt.tl.GPModel(gp_adata, n_components=6).fit(accelerator="meta")
    assert seen == ["meta", "meta", 100] and moved == ["cpu"]
    assert m.x_train_.device.type == "cpu" and m.y_train_.device.type == "cpu"
    pd.testing.assert_frame_equal(m.history_, pd.DataFrame({"evaluation": range(2), "neg_mll": [3.0, 2.5]}))
    assert [r.getMessage() for r in caplog.records] == ["GP hyperparameters: {'lengthscale': 1.5}"]


def test_gp_model_standard_error_fallbacks_without_warnings(gp_adata):
    """A gene without a finite |delta / t| in training takes the median standard error of the others, and 1.0 when no
    gene has one; neither case warns."""
    import warnings

    train = gp_adata.uns["deg"]["perturbations"][:30]
    a = gp_adata.copy()
    means, scores = a.varm["deg_mean"].copy(), a.varm["deg_scores"].copy()
    scores.iloc[0, :] = 0.0  # delta / 0: infinite
    scores.iloc[1, :] = 0.0
    means.iloc[1, :] = a.var["deg_control_mean"].iloc[1]  # 0 / 0: undefined
    a.varm["deg_mean"], a.varm["deg_scores"] = means, scores
    delta, t, _ = _by_hand_inputs(a, train)
    assert (delta[:, 0] != 0).all() and (delta[:, 1] == 0).all()
    others = np.median(np.abs(delta[:, 2:] / t[:, 2:]), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = pt.tl.GPModel(a, n_components=6).fit(train)
        np.testing.assert_allclose(m.gene_se_, np.r_[np.median(others), np.median(others), others], rtol=1e-6)
        a.varm["deg_scores"] = scores * 0.0
        m = pt.tl.GPModel(a, n_components=6).fit(train)
    np.testing.assert_array_equal(m.gene_se_, np.ones(a.n_vars))


def test_gp_model_joint_covariance_and_samples_by_hand(gp_adata):
    """``full_cov``: the latent k(x*, x*) - k(x*, x) K⁻¹ k(x, x*); samples: mean + chol(cov + (noise + 1e-9) I) z
    scaled per gene, with z from ``default_rng(0)`` and 100 draws by default."""
    perts = gp_adata.uns["deg"]["perturbations"]
    train, test = perts[:30], perts[30:35]
    m = pt.tl.GPModel(gp_adata, n_components=6).fit(train)
    ks, kss, K = _textbook_kernels(m, m._embed(train), m._embed(test))
    cov = kss - ks @ np.linalg.solve(K, ks.T)
    mean, got = m.predict_distribution(test, full_cov=True)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, cov, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(mean, m.predict_distribution(test)[0])
    chol = np.linalg.cholesky(got + (m.gp_.hyperparameters["noise"] + 1e-9) * np.eye(5))
    z = np.random.default_rng(0).standard_normal((100, 5, gp_adata.n_vars))
    want = mean[None] + (chol @ z) * m.y_scale_
    np.testing.assert_allclose(m.sample(test), want, rtol=1e-10, atol=1e-12)
    z = np.random.default_rng(3).standard_normal((7, 5, gp_adata.n_vars))
    np.testing.assert_allclose(m.sample(test, 7, rng=3), mean[None] + (chol @ z) * m.y_scale_, rtol=1e-10, atol=1e-12)


def test_gp_model_fold_change_uses_the_labels_offset(gp_adata):
    """``logfc`` is log2 of (expm1(mean + offset) + 1e-9) / (expm1(control + offset) + 1e-9) with the labels' offset."""
    b = gp_adata.copy()
    pt.pp.deg_labels(b, fc_offset=0.5)
    perts = b.uns["deg"]["perturbations"]
    pred = pt.tl.GPModel(b, n_components=6).fit(perts[:30]).predict(perts[30:], inplace=False)
    mu, control = pred.mean[perts[30:]].to_numpy(), b.var["deg_control_mean"].to_numpy()[:, None]
    fc = (np.expm1(mu + 0.5) + 1e-9) / (np.expm1(control + 0.5) + 1e-9)
    np.testing.assert_allclose(pred.logfc[perts[30:]].to_numpy(), np.log2(fc), rtol=1e-5, atol=1e-6)
