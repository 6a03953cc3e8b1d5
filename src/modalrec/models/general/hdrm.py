"""HDRM: hyperbolic diffusion recommender model.

Yuan, Xiao, Chen, Zhao, Wang & Zhuang, "Hyperbolic Diffusion Recommender Model", WWW 2025
(arXiv 2504.01541); read from the released code, spec hdrm.md.

Stage 1 (section 3): an HGCF encoder (:mod:`modalrec.models.general.hgcf`) trained with its margin
loss gives tangent vectors at the origin Z_u [U, D], Z_i [I, D]. It is then frozen; Z is computed once
and kept as buffers (the official code re-propagates the graph on every batch).

Stage 2 (section 4): Gaussian diffusion in the tangent space T_oH ~ R^D with the DiffRec schedule
(``linear-var`` with beta_0 forced to 1e-5). For a triple (u, i+, j-) and t ~ U{0..T-1} (shared):

    z_u^t = q(z_u, t),  z_p^t = q(z_p, t)                           (4.3; directional noise if restrict)
    z^_u = (1 - e) z_u + e f_user(z_u^t, t | z_p)                   (4.4-4.5; e = blend = 0.05)
    z^_p = (1 - e) z_p + e f_item(z_p^t, t | z_u)
    L_rank  = sum_b max(0, d^2(exp_o z^_u, exp_o z^_p) - d^2(exp_o z^_u, exp_o z_n) + m)   (negatives not denoised)
    L_recon = sum_b 1/2 (mean_D (z_u - z^_u)^2 + mean_D (z_p - z^_p)^2)
    L = (1 - alpha) L_rank + alpha L_recon                          (4.6)

Inference (4.8): x = q(mean of the user's train items' Z_i, T - 1), then S reverse steps
x <- coef1_s f_item(x, s | z_u) + coef2_s x, final = (1 - e) z_u + e x, and all items ranked by
-d^2(exp_o final, exp_o Z_i) in one Lorentz GEMM per user chunk. The initial noise comes from a
generator seeded by ``eval_seed`` and the chunk's first user, so evaluation is repeatable.

One run does both stages: the model declares stage 1 (:meth:`stages`) and the experiment layer, with
``stage1_run`` empty, first trains an ``hgcf`` run in ``<run>/stage1`` (selected on validation like any
run); otherwise it loads that run's selected checkpoint; :meth:`load_stage` takes its embeddings, refusing a
run of another model, another train split or another width. A model that was never prepared refuses to train
or score (never a silent random encoder, spec 8.2 item 1).

Beyond the code (flags, faithful defaults): ``rescale`` scales f's output to the norm of the vector it
is blended with (the spec's measurement: f's outputs are ~13x the user vectors, so the 5 % blend moves
users by two thirds of their norm); the loss dict logs the mean norms of z and f(.) per epoch.

``mode=denoise`` (not in the paper; derivation in docs/hdrm.md) trains the stage 2 that inference uses:

    L_x0   = mean_b || f_item(q(z_p, t), t | z_u) - z_p ||^2                 (unblended DDPM x0 objective)
    q_u    = (1 - e) z_u + e f_item(q(h_u, t), t | z_u)                      (h_u: mean of u's train items, as at inference)
    L_rank = mean_b max(0, d^2(exp_o q_u, exp_o z_p) - d^2(exp_o q_u, exp_o z_n) + m)   (raw positives AND negatives)
    L      = L_rank + x0_weight L_x0

so the ranking term scores the query inference builds against the item points inference ranks (a shift
shared by users and positives no longer separates them from negatives), and the x0 error carries a real
weight. ``f_user`` is not used at inference and does not exist in this mode. :meth:`diagnostics` measures,
on a fixed probe of users, the norm of the denoiser's output against the user vectors, the mean cosine
between different users' outputs, the top-20 overlap with stage 1's ranking and the x0 error.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal, cast

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.checks import Check, NonNegative, Positive, Unit
from modalrec.data.context import DataContext
from modalrec.errors import CheckpointError, ModalRecError
from modalrec.models.base import Batch, GeneralRecommender, Recommender, ScoringCache, Stage, register
from modalrec.models.general.hgcf import HGCF, HyperbolicScorer
from modalrec.nn.diffusion import Activation, Denoiser, GaussianDiffusion, Schedule
from modalrec.nn.graph import to_torch_sparse
from modalrec.nn.hyperbolic import Lorentz
from modalrec.nn.losses import hyperbolic_margin_loss
from modalrec.nn.unit import mean_pairwise_cosine

log = logging.getLogger(__name__)
STAGE1_DIR = "stage1"
PROBE_USERS = 512  # users measured by diagnostics()


@register
class HDRM(ScoringCache, HyperbolicScorer, GeneralRecommender):
    """Frozen HGCF tangent embeddings + two conditional MLP denoisers of a light latent diffusion."""

    name: ClassVar[str] = "hdrm"
    paper: ClassVar[str] = "Yuan et al., WWW 2025"

    @dataclass
    class Config:
        # stage 1 (HGCF encoder)
        stage1_run: str = ""  # run dir of an 'hgcf' run on the same data; "" = train stage 1 first, into <run>/stage1
        dim: Annotated[int, Check(ge=2)] = 64  # D of the stage-1 embeddings (HDRM releases 512); must equal the stage-1 run's dim
        layers: NonNegative = 3  # stage-1 propagation layers
        curvature: float = 1.0  # c (K = 1/c)
        stage1_margin: float = 0.1  # margin of the stage-1 loss (the ML-1M checkpoint name says 0.1)
        # stage-1 epochs when trained here (validation selects the epoch); sized so both stages fit 30 min on 2 CPU cores
        stage1_epochs: int = 60
        stage1_lr: float = 1e-3  # Riemannian SGD learning rate of stage 1
        stage1_weight_decay: float = 1e-3  # stage-1 weight decay
        stage1_batch_size: int = 10_000  # stage-1 triples per step
        stage1_eval_every: int = 5  # stage-1 validation interval (epochs)
        stage1_patience: int = 3  # stage-1 early stopping (validations without improvement)
        # stage 2 (diffusion)
        dims: list[Positive] = field(default_factory=lambda: [200, 1100])  # denoiser [h0, h1] (ML-1M release)
        act: Activation = "relu"  # denoiser activation: relu | tanh | sigmoid
        time_dim: int = 10  # timestep embedding size
        dropout: float = 0.5  # dropout on the noisy input
        norm: bool = False  # L2-normalise x_t before the denoiser
        steps: int = 50  # T
        schedule: Schedule = "linear-var"  # linear-var | linear | cosine | binomial
        noise_scale: float = 1e-5  # ML-1M release: scale, min, max = 1e-5, 1e-5, 1e-4
        noise_min: float = 1e-5
        noise_max: float = 1e-4
        beta0: float = 1e-5  # forced beta_0 (beta_fixed)
        sampling_steps: NonNegative = 50  # S reverse steps at inference (may exceed T: t is clamped)
        sampling_noise: bool = False  # add posterior noise in the reverse steps
        alpha: Unit = 0.05  # loss balance (1 - alpha) margin + alpha reconstruction (ML-1M release)
        margin: float = 0.2  # stage-2 margin (hard-coded 0.2 in the code)
        blend: Unit = 0.05  # e of z^ = (1 - e) z + e f(.)
        restrict: bool = False  # directional noise, the paper's structural restriction (off in every release)
        rescale: bool = False  # not in the paper: scale f(.) to the blended vector's norm before blending
        # faithful (the release's stage-2 loss) | denoise (unblended x0 loss, inference-consistent ranking; docs/hdrm.md)
        mode: Literal["faithful", "denoise"] = "faithful"
        # denoise mode: weight of the unblended x0 loss next to the (mean) margin loss
        x0_weight: Annotated[float, Check(ge=0)] = 1.0
        eval_seed: int = 0  # seeds the initial noise of inference

    train_view: ClassVar[str] = "triples"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 20_000, "epochs": 10, "eval_every": 5, "patience": 6}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.alpha": ("float", 0.0, 0.5),
        "model.blend": ("float", 0.0, 0.3),
        "model.steps": ("choice", [10, 50, 100]),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.manifold = Lorentz(1.0 / config.curvature)
        self.diffusion = GaussianDiffusion(
            config.steps, config.schedule, config.noise_scale, config.noise_min, config.noise_max, config.beta0
        )

        def make() -> Denoiser:
            return Denoiser(
                config.dim,
                config.dims,
                cond_dim=config.dim,
                time_dim=config.time_dim,
                act=config.act,
                dropout=config.dropout,
                norm=config.norm,
            )

        self.f_item = make()
        self.f_user = make() if config.mode == "faithful" else None  # only the faithful loss trains it; inference never uses it
        # frozen stage-1 tangent embeddings, saved in checkpoints so a run is self-contained
        self.register_buffer("z_users", torch.zeros(self.n_users, config.dim))
        self.register_buffer("z_items", torch.zeros(self.n_items, config.dim))
        self.register_buffer("stage1_ready", torch.zeros((), dtype=torch.bool))
        # row-normalised train matrix: history means as one sparse matmul
        degree = np.asarray(ctx.train.sum(1)).ravel()
        history = sp.diags(np.where(degree > 0, 1.0 / np.maximum(degree, 1), 0.0)) @ ctx.train
        self.register_buffer("history_mean", to_torch_sparse(history), persistent=False)
        self._history: torch.Tensor | None = None

    # ----------------------------------------------------------------- stage 1
    def stages(self) -> list[Stage]:
        """Stage 1: an hgcf run on this run's data, seed and evaluation (or the finished run ``stage1_run``)."""
        c = self.config
        encoder = HGCF.Config(dim=c.dim, layers=c.layers, margin=c.stage1_margin, curvature=c.curvature)
        train = {
            "epochs": c.stage1_epochs,
            "lr": c.stage1_lr,
            "weight_decay": c.stage1_weight_decay,
            "batch_size": c.stage1_batch_size,
            "eval_every": c.stage1_eval_every,
            "patience": c.stage1_patience,
            "scheduler": "none",
            "amp": False,  # train.amp is for the stage-2 denoisers; hyperbolic maths stays in float32
        }
        return [Stage(STAGE1_DIR, {"name": HGCF.name, **dataclasses.asdict(encoder)}, train, source=c.stage1_run)]

    def load_stage(self, stage: Stage, model: Recommender, stage_ctx: DataContext, ctx: DataContext, source: str) -> None:
        self.load_stage1(model, stage_ctx, ctx, source)

    @torch.no_grad()
    def load_stage1(self, encoder: torch.nn.Module, encoder_ctx: DataContext, ctx: DataContext, source: str) -> None:
        """Cache the tangent embeddings of a trained HGCF after checking it was trained on this data."""
        if not isinstance(encoder, HGCF):
            raise CheckpointError(
                f"hdrm: stage1_run {source} is a '{getattr(encoder, 'name', type(encoder).__name__)}' run; it must be an 'hgcf' "
                "run"
            )
        if (encoder_ctx.n_users, encoder_ctx.n_items) != (ctx.n_users, ctx.n_items) or (encoder_ctx.train != ctx.train).nnz:
            raise CheckpointError(
                f"hdrm: stage1_run {source} was trained on other data ({encoder_ctx.n_users} users x {encoder_ctx.n_items} "
                "items, "
                f"{encoder_ctx.train.nnz} train pairs) than this run ({ctx.n_users} x {ctx.n_items}, {ctx.train.nnz}); "
                "train stage 1 on the same dataset and split, or leave model.stage1_run empty"
            )
        if encoder.config.dim != self.config.dim or encoder.config.curvature != self.config.curvature:
            raise CheckpointError(
                f"hdrm: stage1_run {source} has dim={encoder.config.dim}, curvature={encoder.config.curvature} but this "
                f"model has dim={self.config.dim}, curvature={self.config.curvature}; set them equal"
            )
        encoder.eval()
        z_u, z_i = encoder.tangent_embeddings()
        self.z_users.copy_(z_u)
        self.z_items.copy_(z_i)
        self.stage1_ready.fill_(True)
        self._history = None

    def _check_ready(self) -> None:
        if not bool(self.stage1_ready):
            raise ModalRecError(
                "hdrm: the stage-1 embeddings were never loaded; train through `modalrec train` (which runs or loads "
                "stage 1) or call load_stage1() first"
            )

    # ----------------------------------------------------------------- stage 2
    def blend(self, z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """(1 - e) z + e f (4.5); with ``rescale``, f is first scaled to ||z|| row-wise."""
        if self.config.rescale:
            f = f * (z.norm(dim=-1, keepdim=True) / f.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        return (1 - self.config.blend) * z + self.config.blend * f

    def history_means(self) -> torch.Tensor:
        """[U, D] mean tangent vector of each user's train items (the start of inference), computed once."""
        if self._history is None:
            with torch.autocast(self.z_items.device.type, enabled=False):  # sparse matmul stays in float32
                self._history = torch.sparse.mm(self.history_mean, self.z_items.float())
        return self._history

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        self._check_ready()
        self.clear_scoring_cache()
        if self.config.mode == "denoise":
            return self.denoise_loss(batch)
        c, m = self.config, self.manifold
        z_u, z_p, z_n = self.z_users[batch["users"]], self.z_items[batch["pos"]], self.z_items[batch["neg"]]
        t = torch.randint(0, c.steps, (len(z_u),), device=z_u.device)  # one t per pair, user and item share it
        f_user = cast(Denoiser, self.f_user)  # built in faithful mode, the only mode reaching here
        f_u = f_user(self.diffusion.q_sample(z_u, t, directional=c.restrict), t, cond=z_p)
        f_p = self.f_item(self.diffusion.q_sample(z_p, t, directional=c.restrict), t, cond=z_u)
        hat_u, hat_p = self.blend(z_u, f_u), self.blend(z_p, f_p)
        rank = hyperbolic_margin_loss(m, m.expmap0(hat_u), m.expmap0(hat_p), m.expmap0(z_n), c.margin)
        recon = 0.5 * ((z_u - hat_u).pow(2).mean(-1) + (z_p - hat_p).pow(2).mean(-1)).sum()
        with torch.no_grad():
            norms = {"norm_z": z_u.norm(dim=-1).mean(), "norm_f": f_u.norm(dim=-1).mean()}
        return {"loss": (1 - c.alpha) * rank + c.alpha * recon, "rank": rank, "recon": recon, **norms}

    def denoise_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``mode=denoise``: L_rank(q_u; raw z_p, raw z_n) + x0_weight * ||f_item(z_p^t | z_u) - z_p||^2 (means over the
        batch)."""
        c, m = self.config, self.manifold
        users = batch["users"]
        z_u, z_p, z_n = self.z_users[users], self.z_items[batch["pos"]], self.z_items[batch["neg"]]
        t = torch.randint(0, c.steps, (len(z_u),), device=z_u.device)
        # the DDPM x0 objective, unblended: the item denoiser recovers the positive from its noised version
        x0_hat = self.f_item(self.diffusion.q_sample(z_p, t, directional=c.restrict), t, cond=z_u)
        x0 = (x0_hat.float() - z_p).pow(2).sum(-1).mean()
        # the query inference builds (one-step x0 estimate from the noised history mean), ranked against raw items
        x_hat = self.f_item(self.diffusion.q_sample(self.history_means()[users], t, directional=c.restrict), t, cond=z_u)
        query = self.blend(z_u, x_hat.float())
        rank = hyperbolic_margin_loss(m, m.expmap0(query), m.expmap0(z_p), m.expmap0(z_n), c.margin) / len(z_u)
        with torch.no_grad():
            norms = {"norm_z": z_u.norm(dim=-1).mean(), "norm_f": x_hat.float().norm(dim=-1).mean()}
        return {"loss": rank + c.x0_weight * x0, "rank": rank, "x0": x0, **norms}

    # ----------------------------------------------------------------- inference
    def scoring_state(self) -> torch.Tensor:
        """The points of all items (stage-1 embeddings on H), and the history means computed once."""
        self._check_ready()
        self.history_means()
        return self.manifold.expmap0(self.z_items.double()).float()

    def item_points(self) -> torch.Tensor:
        return self.cached_state()

    def generate(self, users: torch.Tensor) -> torch.Tensor:
        """The denoiser's output [B, D] for ``users`` (4.8): history mean -> noise at T-1 -> S reverse steps."""
        c = self.config
        z_u, x_start = self.z_users[users], self.history_means()[users]
        generator = torch.Generator(device=z_u.device).manual_seed(c.eval_seed * 1_000_003 + int(users[0]))
        noise = torch.randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
        t_last = torch.full((len(users),), c.steps - 1, dtype=torch.long, device=z_u.device)
        x = self.diffusion.q_sample(x_start, t_last, noise, directional=c.restrict)
        return self.diffusion.reverse(
            x, lambda x_t, t: self.f_item(x_t, t, cond=z_u), c.sampling_steps, c.sampling_noise, generator
        )

    def denoise_users(self, users: torch.Tensor) -> torch.Tensor:
        """Final tangent vectors [B, D] of ``users``: the blend of z_u with :meth:`generate`."""
        return self.blend(self.z_users[users], self.generate(users))

    def encode(self, batch: Batch) -> torch.Tensor:
        self._check_ready()
        return self.manifold.expmap0(self.denoise_users(batch["users"]).double()).float()

    # ----------------------------------------------------------------- diagnostics
    @torch.no_grad()
    def diagnostics(self, ctx: DataContext) -> dict[str, float]:
        """What stage 2 does, on a fixed probe of users (the same every epoch; seeded, no global RNG):

        - ``f_over_z``: mean ||f|| / mean ||z_u|| of the denoiser's inference output f and the user vectors;
        - ``shift_over_z``: mean ||q_u - z_u|| / mean ||z_u||, how far the blend moves the users;
        - ``cos_users`` / ``cos_users_stage1``: mean cosine between the outputs f (resp. z_u) of different
          users: a user-independent offset shows as ~1;
        - ``top20_overlap``: share of the top 20 (train items masked) shared with stage 1's ranking;
        - ``x0_error`` / ``x0_error_noop``: ||f_item(z_p^t | z_u) - z_p||^2 / ||z_p||^2 for one train item per
          probe user at a random t, and the same for returning z_p^t unchanged (a denoiser must beat it)."""
        if not bool(self.stage1_ready):
            return {}
        c = self.config
        self.prepare_scoring()
        rng = np.random.default_rng(c.eval_seed)
        active = np.flatnonzero(np.diff(ctx.train.indptr) > 0)
        users_np = np.sort(rng.choice(active, size=min(PROBE_USERS, len(active)), replace=False))
        pos_np = np.array([rng.choice(ctx.train.indices[ctx.train.indptr[u] : ctx.train.indptr[u + 1]]) for u in users_np])
        device = self.z_users.device
        users, pos = torch.as_tensor(users_np, device=device), torch.as_tensor(pos_np, device=device)
        z_u, z_p = self.z_users[users], self.z_items[pos]
        f = self.generate(users).float()
        query = self.blend(z_u, f)
        seen = torch.as_tensor(ctx.train[users_np].toarray() > 0, device=device)
        top = []
        for q in (query, z_u):
            scores = self.score_items(self.manifold.expmap0(q.double()).float(), slice(0, self.n_items)).masked_fill(
                seen, -torch.inf
            )
            top.append(scores.topk(min(20, self.n_items), dim=1).indices)
        overlap = (top[0].unsqueeze(2) == top[1].unsqueeze(1)).any(2).float().mean()
        generator = torch.Generator(device=device).manual_seed(c.eval_seed + 1)
        t = torch.randint(0, c.steps, (len(users),), generator=generator, device=device)
        noise = torch.randn(z_p.shape, generator=generator, device=device)
        z_t = self.diffusion.q_sample(z_p, t, noise, directional=c.restrict)
        scale = z_p.pow(2).sum(-1).mean()
        norm_z = z_u.norm(dim=-1).mean()
        return {
            "f_over_z": float(f.norm(dim=-1).mean() / norm_z),
            "shift_over_z": float((query - z_u).norm(dim=-1).mean() / norm_z),
            "cos_users": mean_pairwise_cosine(f),
            "cos_users_stage1": mean_pairwise_cosine(z_u),
            "top20_overlap": float(overlap),
            "x0_error": float((self.f_item(z_t, t, cond=z_u).float() - z_p).pow(2).sum(-1).mean() / scale),
            "x0_error_noop": float((z_t - z_p).pow(2).sum(-1).mean() / scale),
        }
