"""A Bayesian-neural-network surrogate for Optuna: a deep ensemble with Thompson sampling (``--sampler ensemble``).

HyperPilotRL proposes Bayesian optimisation with a BNN surrogate that models interactions between hyperparameters,
with batch proposals. The surrogate here is a deep ensemble (Lakshminarayanan et al., 2017, "Simple and scalable
predictive uncertainty estimation using deep ensembles"): ``MEMBERS`` small MLPs, each from its own initialisation
on a bootstrap resample of the trials, whose spread is the epistemic uncertainty. Proposals are Thompson samples
(as BOHAMIANN's and most BNN-BO methods allow): each proposal draws one member and maximises its prediction over
random and local candidates. Parallel workers (``-j``) therefore propose different configurations without a
constant liar: a batch of q proposals is q Thompson draws, the batch scheme of Kandasamy et al. (2018, "Parallelised
Bayesian optimisation via Thompson sampling").

Multi-fidelity, as BOHB combines a model with Hyperband: the pruner allocates epochs; the surrogate learns from
finished trials *and* from pruned trials' last reported value, with the fidelity (epochs / max epochs) as an input,
and predicts at fidelity 1.

Encoding: a float or int parameter is scaled to [0, 1] (on a log scale when ``log``); a categorical one is one-hot.
The first ``n_startup`` trials are Optuna's random sampler.

``--sampler ensemble-ei`` (``acquisition="ei"``) is the variant tried after Thompson sampling lost to random search
on Hartmann-6: expected improvement (Jones et al., 1998) on the ensemble's mean and member spread, over candidates
in a trust region (local steps of ``TRUST_SD`` around the best fifth of the trials, with ``TRUST_RANDOM`` of them
uniform), in the spirit of TuRBO (Eriksson et al., 2019). EI is deterministic given the model, so it is a
sequential method; Thompson sampling stays the batch method for parallel workers.

Randomness comes from the sampler's own generators (numpy and torch), never the global ones.
"""

from __future__ import annotations

import math

import numpy as np

from hypera_nnunet.search.sampler_base import RandomStartSampler

MEMBERS = 5
HIDDEN = 64
STEPS = 200
LR = 1e-2
WEIGHT_DECAY = 1e-4
N_RANDOM_CANDIDATES = 2048
N_LOCAL_CANDIDATES = 512
LOCAL_SD = 0.05
TRUST_SD = 0.1
TRUST_RANDOM = 0.1


def _encode_value(dist, v) -> list[float]:
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return [1.0 if c == v else 0.0 for c in dist.choices]
    lo, hi, x = float(dist.low), float(dist.high), float(v)
    if dist.log:
        lo, hi, x = math.log(lo), math.log(hi), math.log(x)
    return [(x - lo) / (hi - lo) if hi > lo else 0.0]


def _decode(dist, u: np.ndarray):
    """The parameter value of an encoded slice ``u`` (clipped, rounded to the distribution's step)."""
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return dist.choices[int(np.argmax(u))]
    x = float(np.clip(u[0], 0.0, 1.0))
    lo, hi = float(dist.low), float(dist.high)
    if dist.log:
        v = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
    else:
        v = lo + x * (hi - lo)
    step = getattr(dist, "step", None)
    if step:
        v = lo + round((v - lo) / step) * step
    if isinstance(dist, od.IntDistribution):
        v = int(round(v))
    return min(max(v, dist.low), dist.high)


def _width(dist) -> int:
    import optuna.distributions as od

    return len(dist.choices) if isinstance(dist, od.CategoricalDistribution) else 1


class DeepEnsemble:
    """``members`` MLPs ``d -> HIDDEN -> HIDDEN -> 1`` on standardised targets; :meth:`predict` gives every
    member's prediction (rows: members).

    :param members: ensemble size.
    :param seed: the torch and numpy generators' seed (bootstrap resamples, initialisations).
    """

    def __init__(self, members: int = MEMBERS, seed: int = 0, steps: int = STEPS) -> None:
        self.members, self.seed, self.steps = members, seed, steps
        self.nets: list = []
        self.mu, self.sd = 0.0, 1.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> DeepEnsemble:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # nets this small train fastest on one thread; restored below
        try:
            return self._fit(torch, x, y)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, torch, x: np.ndarray, y: np.ndarray) -> DeepEnsemble:
        g = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.mu, self.sd = float(y.mean()), float(y.std() or 1.0)
        xt = torch.as_tensor(x, dtype=torch.float32)
        yt = torch.as_tensor((y - self.mu) / self.sd, dtype=torch.float32)[:, None]
        self.nets = []
        for _ in range(self.members):
            idx = torch.as_tensor(rng.integers(0, len(x), len(x)))  # a bootstrap resample per member
            net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.Tanh(),
                                      torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 1))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * (1.0 / math.sqrt(max(1, p.shape[-1]))))
            opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            for _ in range(self.steps):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
            self.nets.append(net.eval())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(members, n)`` predictions on the original target scale."""
        import torch

        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float32)
            out = torch.stack([n(xt)[:, 0] for n in self.nets]).numpy()
        return out * self.sd + self.mu


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """EI of a Gaussian N(mean, sd^2) over ``best`` (maximisation): ``sd * (z Phi(z) + phi(z))``, z = (mean - best)
    / sd; where sd is 0, ``max(mean - best, 0)``."""
    from scipy.stats import norm

    mean, sd = np.asarray(mean, float), np.asarray(sd, float)
    out = np.maximum(mean - best, 0.0)
    pos = sd > 0
    z = (mean[pos] - best) / sd[pos]
    out[pos] = sd[pos] * (z * norm.cdf(z) + norm.pdf(z))
    return out


class EnsembleSampler(RandomStartSampler):
    """Optuna sampler: random for ``n_startup`` trials, then Thompson samples of a deep
    ensemble over the study's finished and pruned trials.

    :param seed: the sampler's generators.
    :param n_startup: random trials before the model is used.
    :param members: ensemble size.
    """

    def __init__(self, seed: int | None = None, n_startup: int = 8, members: int = MEMBERS,
                 acquisition: str = "thompson") -> None:
        if acquisition not in ("thompson", "ei"):
            raise ValueError(f"acquisition {acquisition!r}: thompson or ei")
        self._acquisition = acquisition
        super().__init__(seed)
        self._n_startup, self._members = n_startup, members
        self.last_fit: dict = {}

    def sample_relative(self, study, trial, search_space):
        from optuna.trial import TrialState

        if not search_space:
            return {}
        names = sorted(search_space)
        rows = self.training_rows(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                                  names, search_space)
        # rows of pruned trials count too: under Optuna's Hyperband a sampler sees only its bracket's trials, where
        # few finish (waiting for n_startup finished ones left the model unused in most brackets of a 40-trial study)
        if len(rows) < self._n_startup:
            return {}
        x = np.array([r[0] + [r[2]] for r in rows])
        y = np.array([r[1] for r in rows])
        if study.direction.name == "MINIMIZE":
            y = -y
        model = DeepEnsemble(self._members, seed=int(self._rng.integers(2**31))).fit(x, y)
        cand = self._candidates(x[:, :-1], y, names, search_space)
        preds = model.predict(np.hstack([cand, np.ones((len(cand), 1))]))
        if self._acquisition == "ei":
            score = expected_improvement(preds.mean(axis=0), preds.std(axis=0), float(y[x[:, -1] >= 1.0].max()
                                         if (x[:, -1] >= 1.0).any() else y.max()))
            member = None
        else:
            member = int(self._rng.integers(self._members))  # Thompson: one posterior draw per proposal
            score = preds[member]
        best = cand[int(np.argmax(score))]
        self.last_fit = {"n": len(rows), "member": member, "predicted": float(score.max())}
        out, k = {}, 0
        for name in names:
            w = _width(search_space[name])
            out[name] = _decode(search_space[name], best[k:k + w])
            k += w
        return out

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def training_rows(trials, names, space) -> list[tuple[list[float], float, float]]:
        """(encoded parameters, value, fidelity) per usable trial: a finished one at fidelity 1, a pruned one at its
        last reported step over the largest step any trial reached."""
        from optuna.trial import TrialState

        max_step = max((max(t.intermediate_values) for t in trials if t.intermediate_values), default=1) or 1
        rows = []
        for t in trials:
            if not all(n in t.params for n in names):
                continue
            enc = [v for n in names for v in _encode_value(space[n], t.params[n])]
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
                rows.append((enc, float(t.value), 1.0))
            elif t.state == TrialState.PRUNED and t.intermediate_values:
                step = max(t.intermediate_values)
                v = t.intermediate_values[step]
                if math.isfinite(v):
                    rows.append((enc, float(v), step / max_step))
        return rows

    def _candidates(self, x: np.ndarray, y: np.ndarray, names, space) -> np.ndarray:
        import optuna.distributions as od

        d = x.shape[1]
        top = x[np.argsort(-y)[: max(1, len(y) // 5)]]
        if self._acquisition == "ei":  # a trust region around the best trials
            n_rand = int(TRUST_RANDOM * (N_RANDOM_CANDIDATES + N_LOCAL_CANDIDATES))
            n_local, sd = N_RANDOM_CANDIDATES + N_LOCAL_CANDIDATES - n_rand, TRUST_SD
        else:
            n_rand, n_local, sd = N_RANDOM_CANDIDATES, N_LOCAL_CANDIDATES, LOCAL_SD
        rand = self._rng.random((n_rand, d))
        local = top[self._rng.integers(len(top), size=n_local)] + self._rng.normal(0, sd, (n_local, d))
        cand = np.clip(np.vstack([rand, local]), 0, 1)
        k = 0
        for n in names:  # categorical slices: snap to one-hot
            w = _width(space[n])
            if isinstance(space[n], od.CategoricalDistribution):
                hot = np.zeros((len(cand), w))
                hot[np.arange(len(cand)), np.argmax(cand[:, k:k + w], axis=1)] = 1.0
                cand[:, k:k + w] = hot
            k += w
        return cand
