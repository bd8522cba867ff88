"""One SAC gradient step for several independent learners at once.

HYPERA's six agents each run ``SAC.update`` on 64x64 networks and a batch of 32. At that size an
update is almost all per-operation overhead (about 1.3 ms for ~150 tiny ops on one CPU thread), so six
updates cost six times the overhead. :func:`update_together` stacks the learners' weights along a new
leading dimension and runs each layer of all learners as one batched matrix product (``baddbmm``),
with the twin critics stacked too. It computes the same losses, gradients and steps as calling
``update`` on each learner in turn, up to float rounding (``tests/rl/test_batched.py``):

* each learner's weights stay its own ``nn.Parameter`` s: the stacks are built from them every step,
  gradients flow back through ``torch.stack`` into each learner's own tensors, and its own optimizers'
  state is stepped (one fused Adam call over all of them, :func:`_adam_steps`);
* randomness comes from each learner's own generator, drawn in the order ``update`` draws it (the
  target action's noise, then the policy action's noise), and batches come from each learner's own
  buffer, so every learner sees the same random stream as when updated alone;
* losses are summed over learners. Learners share no weight, so the gradient of the sum with
  respect to one learner's weights is that learner's own gradient;
* learners with fewer action dimensions are padded with zeros to the largest: zero rows in the
  policy's heads, zero input columns in the critics' first layers, zero actions and zero noise, and
  the padded dimensions are masked out of the log-probability. Multiplying and adding zeros is exact,
  and the padding's backward slices the gradients back to each learner's own shapes.

Learners are grouped by network widths, observation size, batch size and the settings the step
shares (``gamma``, ``tau``, temperature tuning); a learner alone in its group takes the plain ``update``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.optim.adam import adam as functional_adam

from hypera_nnunet.rl.buffers import ReplayBatch
from hypera_nnunet.rl.policies import LOG_STD_MAX, LOG_STD_MIN, TANH_EPS
from hypera_nnunet.rl.sac import SAC

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "fused", "decoupled_weight_decay")

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: weights (G, in, out), biases (G, 1, out)


def _signature(sac: SAC, batch: ReplayBatch) -> tuple:
    """Learners with equal signatures can share one batched step (their action sizes may differ)."""
    c = sac.config
    return sac.obs_dim, tuple(c.hidden), c.gamma, c.tau, c.autotune_alpha, batch.observations.shape[0]


def _pad(t: torch.Tensor, rows: int = 0, cols: int = 0) -> torch.Tensor:
    """``t`` with ``rows`` zero rows (dim 0) and ``cols`` zero columns (dim 1, matrices only) added."""
    if not rows and not cols:
        return t
    return F.pad(t, (0, rows)) if t.dim() == 1 else F.pad(t, (0, cols, 0, rows))


def _stack_layers(params: Sequence[Sequence[torch.Tensor]], detach: bool) -> Layers:
    """Layer k of every learner, stacked. ``params[i]``: learner i's (weight, bias) pairs in order."""
    out = []
    for k in range(0, len(params[0]), 2):
        w = torch.stack([p[k].detach() if detach else p[k] for p in params])
        b = torch.stack([p[k + 1].detach() if detach else p[k + 1] for p in params])
        out.append((w.transpose(1, 2), b.unsqueeze(1)))
    return out


def _mlp(layers: Layers, x: torch.Tensor, relu_last: bool) -> torch.Tensor:
    for i, (w, b) in enumerate(layers):
        x = torch.baddbmm(b, x, w)
        if relu_last or i < len(layers) - 1:
            x = torch.relu(x)
    return x


def _adam_steps(optimizers: Sequence[torch.optim.Optimizer], params: list[torch.Tensor],
                grads: list[torch.Tensor]) -> None:
    """Set ``grads`` and do ``for o in optimizers: o.step()`` as one fused Adam call over all of them.

    Adam is elementwise, with a step count per tensor, so one call over the union is the same step.
    Each optimizer steps on its own before its state exists (a learner's first update), or where the
    optimizers' settings differ or are not plain fused Adam."""
    for p, g in zip(params, grads):
        p.grad = g
    groups = [g for o in optimizers for g in o.param_groups]
    first = groups[0]
    states = [o.state.get(p) for o in optimizers for g in o.param_groups for p in g["params"]]
    if (not first.get("fused") or first.get("amsgrad") or first.get("maximize") or first.get("weight_decay")
            or first.get("decoupled_weight_decay") or not all(states)
            or any(tuple(g.get(k) for k in _ADAM_KEYS) != tuple(first.get(k) for k in _ADAM_KEYS) for g in groups)):
        for o in optimizers:
            o.step()
        return
    ordered = [p for g in groups for p in g["params"]]
    functional_adam(
        ordered, [p.grad for p in ordered], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
        [s["step"] for s in states], fused=True, amsgrad=False, beta1=first["betas"][0], beta2=first["betas"][1],
        lr=first["lr"], weight_decay=0.0, eps=first["eps"], maximize=False)


class _Actors:
    """G squashed Gaussian actors as one batched ``SquashedGaussianActor.forward``, padded to ``act``."""

    def __init__(self, sacs: Sequence[SAC], act: int) -> None:
        params = []
        for s in sacs:
            p, pad = list(s._actor_params), act - s.act_dim  # trunk..., mu (w, b), log_std (w, b)
            params.append(p[:-4] + [_pad(t, rows=pad) for t in p[-4:]])
        layers = _stack_layers(params, detach=False)
        self.trunk, self.mu, self.log_std = layers[:-2], layers[-2], layers[-1]
        self.box = [torch.stack([_pad(getattr(s.actor, k), rows=act - s.act_dim) for s in sacs]).unsqueeze(1)
                    for k in ("scale", "bias", "low", "high")]
        self.mask = torch.tensor([[1.0] * s.act_dim + [0.0] * (act - s.act_dim) for s in sacs]).unsqueeze(1)

    def __call__(self, obs: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, bias, low, high = self.box
        h = _mlp(self.trunk, obs, relu_last=True)
        mu = torch.baddbmm(self.mu[1], h, self.mu[0])
        log_std = torch.baddbmm(self.log_std[1], h, self.log_std[0]).clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        u = mu + std * eps
        y = torch.tanh(u)
        action = torch.clamp(bias + scale * y, low, high)  # padded dimensions: exactly 0
        log_prob = ((-0.5 * ((u - mu) / std) ** 2 - log_std - _LOG_SQRT_2PI) * self.mask).sum(-1, keepdim=True)
        log_prob = log_prob - (torch.log(1 - y.pow(2) + TANH_EPS) * self.mask).sum(-1, keepdim=True)
        return action, log_prob


class _TwinCritics:
    """G twin critics as one batched function: q1 of every learner, then q2, along the leading dim."""

    def __init__(self, params: Sequence[Sequence[torch.Tensor]], pads: Sequence[int], detach: bool) -> None:
        self.g = len(params)
        half = len(params[0]) // 2  # q1's (weight, bias) pairs, then q2's
        params = [[t.detach() for t in p] if detach else list(p) for p in params]  # before padding: no graph
        nets = [[_pad(p[0], cols=pad)] + p[1:half] for p, pad in zip(params, pads)]
        nets += [[_pad(p[half], cols=pad)] + p[half + 1:] for p, pad in zip(params, pads)]
        self.layers = _stack_layers(nets, detach=False)

    def __call__(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        q = _mlp(self.layers, torch.cat([x, x]), relu_last=False)
        return q[: self.g], q[self.g:]


def _step(sacs: Sequence[SAC], batches: Sequence[ReplayBatch]) -> list[dict]:
    """One batched ``SAC.update`` for learners of one signature."""
    cfg, b = sacs[0].config, batches[0].observations.shape[0]
    act = max(s.act_dim for s in sacs)
    pads = [act - s.act_dim for s in sacs]
    obs, rewards, next_obs, dones, weights = (
        torch.stack([getattr(x, f) for x in batches])
        for f in ("observations", "rewards", "next_observations", "dones", "weights"))
    actions = torch.stack([_pad(x.actions, cols=p) for x, p in zip(batches, pads)])
    # per learner, in update's order: the target action's noise, then the policy action's noise
    eps = [[torch.randn((b, s.act_dim), generator=s.generator) for _ in range(2)] for s in sacs]
    eps_next, eps_pi = (torch.stack([_pad(e[j], cols=p) for e, p in zip(eps, pads)]) for j in (0, 1))
    log_alpha = torch.stack([s.log_alpha.detach() for s in sacs]).unsqueeze(-1)  # (G, 1, 1)
    alpha = log_alpha.exp()
    actors = _Actors(sacs, act)

    with torch.no_grad():
        next_a, next_logp = actors(next_obs, eps_next)
        q1_t, q2_t = _TwinCritics([s._target_params for s in sacs], pads, detach=True)(next_obs, next_a)
        target = rewards + cfg.gamma * (1.0 - dones) * (torch.min(q1_t, q2_t) - alpha * next_logp)

    critic_params = [p for s in sacs for p in s._critic_params]
    q1, q2 = _TwinCritics([s._critic_params for s in sacs], pads, detach=False)(obs, actions)
    td1, td2 = q1 - target, q2 - target
    critic_losses = 0.5 * (weights * (td1.pow(2) + td2.pow(2))).mean(dim=(1, 2))
    # the weights' gradients arrive as transposed views, and fused Adam ignores strides: make them contiguous
    grads = [g.contiguous() for g in torch.autograd.grad(critic_losses.sum(), critic_params)]
    _adam_steps([s.critic_opt for s in sacs], critic_params, grads)

    # the actor is scored by the critics after their step, as in update
    pi_a, logp = actors(obs, eps_pi)
    q1_pi, q2_pi = _TwinCritics([s._critic_params for s in sacs], pads, detach=True)(obs, pi_a)
    actor_losses = (alpha * logp - torch.min(q1_pi, q2_pi)).mean(dim=(1, 2))
    params = [p for s in sacs for p in s._actor_params]
    grads = [g.contiguous() for g in torch.autograd.grad(actor_losses.sum(), params)]
    optimizers = [s.actor_opt for s in sacs]

    # the temperature's loss does not depend on the actor's step, so both take one optimizer call; its
    # gradient with respect to log_alpha is -(logp + target_entropy).mean(), written out (no backward)
    alpha_losses = torch.zeros(len(sacs))
    if cfg.autotune_alpha:
        target_entropy = torch.tensor([s.target_entropy for s in sacs]).reshape(-1, 1, 1)
        gap = (logp.detach() + target_entropy).mean(dim=(1, 2))
        alpha_losses = -log_alpha.reshape(-1) * gap
        params += [s.log_alpha for s in sacs]
        optimizers += [s.alpha_opt for s in sacs]
        grads += list((-gap).reshape(-1, 1).unbind(0))
    _adam_steps(optimizers, params, grads)

    with torch.no_grad():
        torch._foreach_lerp_([p for s in sacs for p in s._target_params], critic_params, cfg.tau)
    stats = torch.stack([critic_losses.detach(), actor_losses.detach(), alpha_losses,
                         torch.stack([s.log_alpha.detach()[0] for s in sacs]).exp(),
                         -logp.detach().mean(dim=(1, 2))]).tolist()
    td = (0.5 * (td1 + td2)).detach().abs().reshape(len(sacs), -1).numpy()
    out = []
    for i, s in enumerate(sacs):
        s.n_updates += 1
        out.append({"critic_loss": stats[0][i], "actor_loss": stats[1][i], "alpha_loss": stats[2][i],
                    "alpha": stats[3][i], "entropy": stats[4][i], "td_errors": td[i]})
    return out


def update_together(sacs: Sequence[SAC], batches: Sequence[ReplayBatch]) -> list[dict]:
    """``[sac.update(batch) for sac, batch in zip(sacs, batches)]``, computed as one batched step for
    each group of learners that can share one (see the module's docstring)."""
    if len(sacs) != len(batches):
        raise ValueError(f"{len(sacs)} learners but {len(batches)} batches")
    if len({id(s) for s in sacs}) != len(sacs):
        raise ValueError("a learner appears twice: one update_together call steps each learner once")
    groups: dict[tuple, list[int]] = {}
    for i, (s, bt) in enumerate(zip(sacs, batches)):
        groups.setdefault(_signature(s, bt), []).append(i)
    out: list[dict] = [{}] * len(sacs)
    for idx in groups.values():
        if len(idx) == 1:
            out[idx[0]] = sacs[idx[0]].update(batches[idx[0]])
            continue
        for i, o in zip(idx, _step([sacs[i] for i in idx], [batches[i] for i in idx])):
            out[i] = o
    return out
