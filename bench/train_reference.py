#!/usr/bin/python3
"""PyTorch reference for fathom's training speed on a DeepSeek-V3-shaped model.

Measures fp32 CPU training throughput (forward + backward + AdamW step) of a DeepSeek-V3-shaped
model built from the layer classes of DeepSeek's reference inference/model.py, which this
script imports from the path given (it is not part of fathom): the main stack (embedding, MLA +
dense/MoE blocks, final norm, head) plus one multi-token-prediction (MTP) module. The loss is
the one fathom's trainer uses: next-token cross-entropy, the MTP cross-entropy weighted by
--mtp-weight, and the sequence-wise expert balance loss weighted by --balance-alpha; after each
step the router bias follows the auxiliary-loss-free rule with step --bias-update.

Run with Debian's Python and its torch (apt-get install python3-torch):
  /usr/bin/python3 bench/train_reference.py \
      --model-py PATH/TO/DeepSeek-V3/inference/model.py \
      --config ../shared/bench/train-bench.config.json [--steps 10] [--threads 2]
(--config defaults to that file in the shared/ folder beside the fathom checkout.)

stdout gets one JSON line: tokens_per_s, step_s, peak_rss_mb, params, torch, blas (and the run's
shape and thread settings). stderr gets the loss of every step so one can see it fall. --check
instead prints the losses of 3 steps at lr 1e-3 from a fixed seed and fails if the loss did not
fall.

The batch is one seeded random token batch reused every step (--fresh-batches draws a new one
per step): uniform random tokens carry nothing to learn across batches, so only a repeated batch
shows the optimizer working. Timing does not depend on the token values beyond expert routing.
"""
import argparse
import importlib.util
import json
import os
import re
import resource
import sys
import time
import types


def build_parser():
    p = argparse.ArgumentParser(description="PyTorch reference for fathom's training speed")
    p.add_argument("--model-py", required=True, help="DeepSeek-V3 inference/model.py")
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    p.add_argument("--config", default=os.path.join(shared, "bench", "train-bench.config.json"))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--mtp-weight", type=float, default=0.3)
    p.add_argument("--balance-alpha", type=float, default=0.0001)
    p.add_argument("--bias-update", type=float, default=0.001)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh-batches", action="store_true", help="a new random batch every step")
    p.add_argument("--check", action="store_true", help="print 3 losses from seed 0, lr 1e-3")
    return p


# Thread pools read their settings when torch loads. Debian's torch runs its matmuls in
# OpenBLAS's own pthread pool beside torch's OpenMP pool; OpenMP workers that spin between ops
# take the cores OpenBLAS needs (3-5x slower steps on 2 cores), so they sleep instead, and
# OpenBLAS gets the same thread count as torch. Set either variable to override.
if __name__ == "__main__":
    _threads = str(build_parser().parse_known_args()[0].threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


def load_model_py(path):
    """Imports DeepSeek's model.py as a module, set up for fp32 single-process training."""
    # model.py imports its FP8 triton kernels at module level; the fp32 paths never call them.
    if "kernel" not in sys.modules:
        stub = types.ModuleType("kernel")

        def unavailable(*args, **kwargs):
            raise RuntimeError("FP8 kernels are not available in the training reference")

        stub.act_quant = stub.weight_dequant = stub.fp8_gemm = unavailable
        sys.modules["kernel"] = stub
    if not hasattr(F, "rms_norm"):  # torch < 2.4 (Debian 12 ships 1.13)
        def rms_norm(x, shape, weight=None, eps=1e-6):
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            return y * weight if weight is not None else y

        F.rms_norm = rms_norm
    spec = importlib.util.spec_from_file_location("deepseek_model", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    m.world_size, m.rank = 1, 0
    m.attn_impl = "naive"  # keys and values materialized per head: the form that trains
    m.Linear.dtype = torch.float32
    return m


def model_args(m, cfg, batch, seq):
    """Maps a Hugging Face DeepSeek-V3 config.json onto model.py's ModelArgs."""
    a = m.ModelArgs(
        max_batch_size=batch, max_seq_len=seq, vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"], inter_dim=cfg["intermediate_size"],
        moe_inter_dim=cfg["moe_intermediate_size"], n_layers=cfg["num_hidden_layers"],
        n_dense_layers=cfg["first_k_dense_replace"], n_heads=cfg["num_attention_heads"],
        n_routed_experts=cfg["n_routed_experts"], n_shared_experts=cfg["n_shared_experts"],
        n_activated_experts=cfg["num_experts_per_tok"], n_expert_groups=cfg["n_group"],
        n_limited_groups=cfg["topk_group"], score_func=cfg.get("scoring_func", "softmax"),
        route_scale=cfg.get("routed_scaling_factor", 1.0), q_lora_rank=cfg.get("q_lora_rank") or 0,
        kv_lora_rank=cfg["kv_lora_rank"], qk_nope_head_dim=cfg["qk_nope_head_dim"],
        qk_rope_head_dim=cfg["qk_rope_head_dim"], v_head_dim=cfg["v_head_dim"],
        rope_theta=float(cfg.get("rope_theta", 10000.0)))
    rs = cfg.get("rope_scaling")
    if rs:
        a.original_seq_len = rs["original_max_position_embeddings"]
        a.rope_factor = rs["factor"]
        a.beta_fast = rs.get("beta_fast", a.beta_fast)
        a.beta_slow = rs.get("beta_slow", a.beta_slow)
        a.mscale = rs.get("mscale", a.mscale)
    else:
        # No YaRN: keep model.py's correction (applied when max_seq_len > original_seq_len) off.
        a.original_seq_len = max(seq, cfg.get("max_position_embeddings", seq))
    return a


class DeepSeekTrainModel(nn.Module):
    """Main stack + one MTP module sharing the main embedding and head."""

    def __init__(self, m, args, router_bias):
        super().__init__()
        self.embed = m.ParallelEmbedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList([m.Block(i, args) for i in range(args.n_layers)])
        self.norm = m.RMSNorm(args.dim)
        self.head = m.ColumnParallelLinear(args.dim, args.vocab_size)
        # MTP depth 1: combine the main hidden state at i with the embedding of token i+1.
        self.mtp_enorm = m.RMSNorm(args.dim)
        self.mtp_hnorm = m.RMSNorm(args.dim)
        self.mtp_eh_proj = m.Linear(2 * args.dim, args.dim)
        self.mtp_block = m.Block(args.n_layers, args)  # layer id past n_dense_layers: MoE
        self.mtp_norm = m.RMSNorm(args.dim)  # shared_head.norm
        self.register_buffer("freqs_cis", m.precompute_freqs_cis(args), persistent=False)
        self.gates = [mod for mod in self.modules() if isinstance(mod, m.Gate)]
        self.attns = [mod for mod in self.modules() if isinstance(mod, m.MLA)]
        for g in self.gates:
            # model.py makes the router bias only when dim == 7168; give every noaux_tc gate a
            # zero bias (a buffer: the optimizer never touches it) so selection adds it.
            if router_bias:
                delattr(g, "bias")  # a Parameter or a plain None attribute
                g.register_buffer("bias", torch.zeros(args.n_routed_experts))
            elif g.bias is not None:
                g.bias.requires_grad_(False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02)
            else:
                nn.init.ones_(p)  # only RMSNorm weights are 1-D
        self.routes = []  # (gate, input (N, D), indices (N, K)) of the current forward
        for g in self.gates:
            g.register_forward_hook(self._capture_route)

    def _capture_route(self, gate, inputs, outputs):
        self.routes.append((gate, inputs[0], outputs[1]))

    def _blocks(self, blocks, h):
        t = h.size(1)
        mask = torch.full((t, t), float("-inf")).triu_(1)
        freqs = self.freqs_cis[:t]
        for b in blocks:
            h = b(h, 0, freqs, mask)
        return h

    def forward(self, tokens):
        """tokens (B, T) -> (main CE, MTP CE)."""
        self.routes = []
        # The naive MLA writes keys/values into its cache buffers; cut the previous step's graph.
        for a in self.attns:
            a.k_cache = a.k_cache.detach()
            a.v_cache = a.v_cache.detach()
        b, t = tokens.shape
        emb = self.embed(tokens)  # (B, T, D)
        h = self.norm(self._blocks(self.layers, emb))  # (B, T, D)
        logits = self.head(h[:, : t - 1])  # (B, T-1, V): row i predicts t_{i+1}
        main = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        # MTP row i (0..T-2) sees h_i and token i+1 at rope position i, predicts t_{i+2}.
        x = torch.cat([self.mtp_enorm(emb[:, 1:]), self.mtp_hnorm(h[:, : t - 1])], dim=-1)
        hm = self.mtp_norm(self._blocks([self.mtp_block], self.mtp_eh_proj(x)))  # (B, T-1, D)
        mlogits = self.head(hm[:, : t - 2])  # (B, T-2, V); the last row has no target
        mtp = F.cross_entropy(mlogits.flatten(0, 1), tokens[:, 2:].flatten())
        return main, mtp

    def balance_loss(self, batch):
        """Sequence-wise balance loss, summed over MoE layers, mean over sequences (unscaled)."""
        total = 0.0
        for gate, x, idx in self.routes:
            e = gate.weight.size(0)
            k = idx.size(1)
            logits = F.linear(x, gate.weight).view(batch, -1, e)  # (B, T, E)
            s = logits.sigmoid() if gate.score_func == "sigmoid" else logits.softmax(-1)
            s = s / s.sum(-1, keepdim=True)
            t = s.size(1)
            counts = torch.zeros(batch, e).scatter_add_(
                1, idx.view(batch, t * k), torch.ones(batch, t * k))  # (B, E)
            f = counts * (e / (k * t))
            total = total + (f * s.mean(1)).sum(-1).mean()
        return total

    @torch.no_grad()
    def update_router_bias(self, gamma):
        """Auxiliary-loss-free balancing: raise underloaded experts' bias, lower overloaded."""
        for gate, _, idx in self.routes:
            if gate.bias is None:
                continue
            load = torch.bincount(idx.flatten(), minlength=gate.bias.numel()).float()
            gate.bias += gamma * torch.sign(load.mean() - load)


def make_optimizer(model, lr):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def train_step(model, opt, tokens, a):
    main, mtp = model(tokens)
    bal = model.balance_loss(tokens.size(0))
    loss = main + a.mtp_weight * mtp + a.balance_alpha * bal
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    model.update_router_bias(a.bias_update)
    return {"loss": loss.item(), "main": main.item(), "mtp": mtp.item(), "balance": bal.item()}


def blas_description():
    found = re.search(r"BLAS_INFO=[^,\s]*", torch.__config__.show())
    info = found.group(0) if found else "BLAS_INFO=?"
    # Debian's torch links the generic libblas.so.3; say which implementation it resolves to.
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1] for line in maps if "blas" in line.split()[-1]}
        info += " (" + ", ".join(sorted(os.path.realpath(p) for p in libs)) + ")"
    except OSError:
        pass
    return info


def main():
    p = build_parser()
    a = p.parse_args()
    if a.check:
        a.lr, a.seed, a.warmup_steps, a.steps, a.fresh_batches = 1e-3, 0, 0, 3, False
    if a.seq < 3:
        p.error("--seq must be at least 3 (the MTP module predicts two tokens ahead)")

    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(a.seed)
    m = load_model_py(a.model_py)
    with open(a.config) as f:
        cfg = json.load(f)
    if cfg.get("num_nextn_predict_layers", 1) < 1:
        p.error("the config has no MTP module (num_nextn_predict_layers = 0)")
    args = model_args(m, cfg, a.batch, a.seq)
    router_bias = cfg.get("topk_method") == "noaux_tc"
    if not router_bias and args.n_expert_groups > 1:
        # Without a bias, model.py's group masking writes into the scores autograd keeps.
        p.error("group-limited routing without a router bias (noaux_tc) cannot be trained here")
    model = DeepSeekTrainModel(m, args, router_bias)
    opt = make_optimizer(model, a.lr)

    gen = torch.Generator().manual_seed(a.seed)
    draw = lambda: torch.randint(0, args.vocab_size, (a.batch, a.seq), generator=gen)
    tokens = draw()
    losses = []

    def step(i, tag):
        nonlocal tokens
        if a.fresh_batches and i > 0:
            tokens = draw()
        r = train_step(model, opt, tokens, a)
        losses.append(r)
        print(f"{tag} step {i}: loss {r['loss']:.5f} (main {r['main']:.5f}, mtp {r['mtp']:.5f}, "
              f"balance {r['balance']:.5f})", file=sys.stderr, flush=True)

    for i in range(a.warmup_steps):
        step(i, "warmup")
    t0 = time.perf_counter()
    for i in range(a.steps):
        step(a.warmup_steps + i, "timed")
    elapsed = time.perf_counter() - t0

    if a.check:
        print(json.dumps({"check_losses": [round(r["loss"], 6) for r in losses]}))
        if not losses[-1]["loss"] < losses[0]["loss"]:
            print("check failed: the loss did not fall", file=sys.stderr)
            sys.exit(1)
        return
    steps = max(a.steps, 1)
    print(json.dumps({
        "tokens_per_s": a.steps * a.batch * a.seq / elapsed if a.steps else 0.0,
        "step_s": elapsed / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "blas": blas_description(),
        "batch": a.batch, "seq": a.seq, "threads": a.threads, "steps": a.steps,
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")},
    }))


if __name__ == "__main__":
    main()
