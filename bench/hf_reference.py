"""The baseline side of the benchmarks and parity tests: a random-weight transformers T5 of a given shape.

``build_reference`` makes ``T5ForConditionalGeneration`` from a ``T5Config`` (seeded), and
``save_checkpoint`` writes it as a transformers checkpoint folder (``config.json`` + ``model.safetensors``)
that ``model.load_pretrained`` reads, so both implementations run the very same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

# transformers T5Config arguments per shape, plus weight_scale (see build_reference)
SHAPES: dict[str, dict] = {
    # tests: milliseconds per forward pass
    "tiny": dict(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
    # T5-small (original T5: ReLU FFN, head tied to the embedding)
    "small": dict(
        vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
        feed_forward_proj="relu", tie_word_embeddings=True, weight_scale=10.0,
    ),
    # FLAN-T5-base (gated-gelu FFN, untied head)
    "base": dict(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    ),
}  # fmt: skip


def build_reference(shape: str | dict, seed: int = 0, **overrides):
    """A randomly initialised T5ForConditionalGeneration in eval mode (fp32, CPU).

    transformers 5 ties the LM head to the embedding whatever the config says, so an untied shape gets its
    own head here (as a FLAN-T5 checkpoint has); ``save_checkpoint`` writes it as a distinct tensor.
    ``weight_scale`` multiplies every projection: with transformers' init, a tied T5-small says the pad token
    forever (the start token's embedding dominates the residual stream and its own row wins the tied head),
    which would make the token comparisons trivial; scaled by 10 its greedy outputs vary token to token."""
    from transformers import T5Config, T5ForConditionalGeneration

    args = {**(SHAPES[shape] if isinstance(shape, str) else shape), **overrides}
    weight_scale = args.pop("weight_scale", 1.0)
    untied = args.get("tie_word_embeddings") is False
    config = T5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **args)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = T5ForConditionalGeneration(config).eval()
        if untied:
            head = torch.randn(config.vocab_size, config.d_model) * config.d_model**-0.5
            model.lm_head.weight = torch.nn.Parameter(head)
        if weight_scale != 1.0:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if (
                        param.dim() == 2
                        and not name.startswith(("shared", "lm_head"))
                        and "relative" not in name
                    ):
                        param.mul_(weight_scale)
    finally:
        torch.random.set_rng_state(generator_state)
    return model


def save_checkpoint(model, folder: str | Path) -> Path:
    """config.json + model.safetensors (fp32), every tensor its own copy (tied ones included)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        name: t.detach().to("cpu", torch.float32).contiguous().clone()
        for name, t in model.state_dict().items()
    }
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(str(folder / "config.json"))
    return folder


@torch.no_grad()
def scale_eos_logit(model, factor: float, eos_token_id: int = 1) -> None:
    """Make a random model stop: rescale the LM head's EOS row to `factor` times the mean row norm, so EOS
    wins the argmax at some steps (more often for larger factors). Works on ours and on transformers'."""
    head = (
        model.lm_head.weight if getattr(model, "lm_head", None) is not None else model.token_embedding.weight
    )
    others = torch.cat([head[:eos_token_id], head[eos_token_id + 1 :]])
    row = head[eos_token_id]
    head[eos_token_id] = row / row.norm() * others.norm(dim=1).mean() * factor


def hf_generate(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, min_new_tokens: int
):
    """transformers' greedy generate, output without the decoder start token (our convention)."""
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=False,
        num_beams=1,
    )
    return out[:, 1:]
